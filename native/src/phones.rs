//! The phone fast path: phonenumbers' `parse()` and `is_valid_number()` for
//! the common shapes, from the library's own metadata.
//!
//! Python (`normalize.py`) reads the metadata and decides what is modelled: it
//! hands over, per country calling code, each region's patterns as strings
//! (`normalize._country_plans`). This module compiles them once and runs the
//! per-number steps `normalize.fast_normalize_phone` documents. Whatever it
//! is unsure of it defers, and the Python caller asks the library; the tests
//! compare the answers with phonenumbers' on its own test suite, every
//! example number it ships and generated input.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use regex::bytes::{Captures, Regex, RegexBuilder};

/// phonenumbers' `_MAX_INPUT_STRING_LENGTH`.
const MAX_INPUT: usize = 250;
/// phonenumbers' `_MIN_LENGTH_FOR_NSN` and `_MAX_LENGTH_FOR_NSN`.
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;
const MAX_CC_DIGITS: usize = 3;

/// phonenumbers' `ValidationResult`, only the outcomes `parse()` tells apart
/// (the values of `normalize._length_verdict`).
const POSSIBLE: u8 = 0;
const TOO_LONG: u8 = 2;

/// The answer for one number.
pub enum Phone {
    /// Valid: its E.164 form.
    Valid(String),
    /// Parsed, and not a valid number.
    Invalid,
    /// Not modelled: the library decides.
    Defer,
}

/// One piece of a national-prefix transform rule (`\1` and friends).
enum Piece {
    Text(Vec<u8>),
    Group(usize),
}

/// One region's metadata, compiled: `normalize._Plan`.
struct Plan {
    region: String,
    cc: u32,
    cc_str: Vec<u8>,
    idd: Option<Regex>,
    national_prefix: Option<Regex>,
    transform: Option<Vec<Piece>>,
    general: Option<Regex>,
    /// phonenumbers' length verdict for the general description, by length.
    verdicts: Vec<u8>,
    leading: Option<Regex>,
    /// By length of a national number: the number types' patterns, joined.
    valid_by_length: Vec<Option<Regex>>,
}

/// The plan's pattern strings, as `normalize._country_plans` gives them.
type PlanSource = (
    String,
    u32,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<u8>,
    Option<String>,
    Vec<Option<String>>,
);

/// A pattern that must match at the start (`re.match`), or the whole text
/// (`re.fullmatch`). Numbers here are ASCII digits, so `\d` may be ASCII.
fn compile(pattern: &str, whole: bool) -> Option<Regex> {
    let anchored = if whole {
        format!(r"\A(?:{pattern})\z")
    } else {
        format!(r"\A(?:{pattern})")
    };
    RegexBuilder::new(&anchored).unicode(false).build().ok()
}

/// Python's `re.sub` template syntax as the metadata uses it: text and `\N`.
/// Anything else (named groups, escapes) is not modelled.
fn template(rule: &str) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut bytes = rule.bytes().peekable();
    let mut text = Vec::new();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            text.push(b);
            continue;
        }
        let digit = bytes.next().filter(u8::is_ascii_digit)?;
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        let mut group = usize::from(digit - b'0');
        // Python reads at most two digits as a group number.
        if let Some(next) = bytes.next_if(u8::is_ascii_digit) {
            group = group * 10 + usize::from(next - b'0');
        }
        pieces.push(Piece::Group(group));
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Some(pieces)
}

impl Plan {
    /// None when a pattern does not compile or the rule is not modelled; the
    /// country is then left to the library.
    fn new(source: PlanSource) -> Option<Plan> {
        let (region, cc, idd, national_prefix, transform, general, verdicts, leading, valid) =
            source;
        let optional = |pattern: &Option<String>, whole| match pattern {
            None => Some(None),
            Some(pattern) => compile(pattern, whole).map(Some),
        };
        let national_prefix = optional(&national_prefix, false)?;
        let transform = match &transform {
            None => None,
            Some(rule) => {
                let pieces = template(rule)?;
                // Without a prefix pattern the rule is never used; with one,
                // a group it lacks would make re.sub raise.
                if let Some(prefix) = &national_prefix {
                    let groups = prefix.captures_len() - 1;
                    let known = pieces.iter().all(|piece| match piece {
                        Piece::Group(group) => (1..=groups).contains(group),
                        Piece::Text(_) => true,
                    });
                    if !known || groups == 0 {
                        return None;
                    }
                }
                Some(pieces)
            }
        };
        if verdicts.len() != MAX_NSN + 1 || valid.len() != MAX_NSN + 1 {
            return None;
        }
        Some(Plan {
            region,
            cc,
            cc_str: cc.to_string().into_bytes(),
            idd: optional(&idd, false)?,
            national_prefix,
            transform,
            general: optional(&general, true)?,
            verdicts,
            leading: optional(&leading, false)?,
            valid_by_length: valid
                .iter()
                .map(|pattern| optional(pattern, true))
                .collect::<Option<Vec<_>>>()?,
        })
    }

    fn general(&self, number: &[u8]) -> bool {
        self.general.as_ref().is_some_and(|g| g.is_match(number))
    }

    /// Past the longest national number every length is too long.
    fn verdict(&self, number: &[u8]) -> u8 {
        self.verdicts.get(number.len()).copied().unwrap_or(TOO_LONG)
    }

    /// phonenumbers' `_maybe_strip_national_prefix_carrier_code`, number only.
    fn strip_national_prefix(&self, number: &[u8]) -> Vec<u8> {
        let Some(prefix) = &self.national_prefix else {
            return number.to_vec();
        };
        let Some(caps) = (!number.is_empty())
            .then(|| prefix.captures(number))
            .flatten()
        else {
            return number.to_vec();
        };
        let end = caps.get(0).map_or(0, |m| m.end());
        let last = caps.len() - 1;
        let stripped = match &self.transform {
            Some(pieces) if caps.get(last).is_some() => {
                let mut out = expand(pieces, &caps);
                out.extend_from_slice(&number[end..]);
                out
            }
            _ => number[end..].to_vec(),
        };
        // Keep the prefix when stripping turns a viable number into a non-viable one.
        if self.general(number) && !self.general(&stripped) {
            return number.to_vec();
        }
        stripped
    }

    /// phonenumbers' `_number_type_helper(nsn, metadata) != UNKNOWN`.
    fn is_valid(&self, nsn: &[u8]) -> bool {
        match self.valid_by_length.get(nsn.len()) {
            Some(Some(types)) => self.general(nsn) && types.is_match(nsn),
            _ => false,
        }
    }
}

/// `re.sub`'s expansion: a group that did not take part is empty.
fn expand(pieces: &[Piece], caps: &Captures<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text),
            Piece::Group(group) => {
                if let Some(m) = caps.get(*group) {
                    out.extend_from_slice(m.as_bytes());
                }
            }
        }
    }
    out
}

/// The regions sharing a country calling code, main region first.
struct Country {
    plans: Vec<Plan>,
}

impl Country {
    fn main(&self) -> &Plan {
        &self.plans[0]
    }

    /// phonenumbers' `is_valid_number`: find the region, then validate for it.
    fn is_valid(&self, nsn: &[u8]) -> bool {
        if let [only] = self.plans.as_slice() {
            return only.is_valid(nsn);
        }
        for plan in &self.plans {
            match &plan.leading {
                Some(leading) if leading.is_match(nsn) => return plan.is_valid(nsn),
                Some(_) => {}
                None if plan.is_valid(nsn) => return true,
                None => {}
            }
        }
        false
    }
}

/// The phone fast path, with each country's plans compiled on first use.
#[pyclass(frozen)]
pub struct Phones {
    region_cc: HashMap<String, u32>,
    country_codes: HashSet<u32>,
    /// Called with a country calling code: its plans' sources, or None.
    source: Py<PyAny>,
    countries: Mutex<HashMap<u32, Option<Arc<Country>>>>,
}

impl Phones {
    fn country(&self, py: Python<'_>, cc: u32) -> PyResult<Option<Arc<Country>>> {
        if let Some(country) = self.countries.lock().expect("not poisoned").get(&cc) {
            return Ok(country.clone());
        }
        // Not under the lock: the Python call may let another thread in.
        let sources: Option<Vec<PlanSource>> = self.source.bind(py).call1((cc,))?.extract()?;
        let country = sources
            .and_then(|sources| {
                sources
                    .into_iter()
                    .map(Plan::new)
                    .collect::<Option<Vec<_>>>()
            })
            .filter(|plans| !plans.is_empty())
            .map(|plans| Arc::new(Country { plans }));
        self.countries
            .lock()
            .expect("not poisoned")
            .insert(cc, country.clone());
        Ok(country)
    }

    /// phonenumbers' `_extract_country_code`: the code and the rest, if known.
    fn split_country_code<'a>(&self, digits: &'a [u8]) -> Option<(u32, &'a [u8])> {
        if digits[0] == b'0' {
            return None;
        }
        let mut cc = 0u32;
        for end in 1..=MAX_CC_DIGITS {
            cc = cc * 10 + u32::from(digits[end - 1] - b'0');
            if self.country_codes.contains(&cc) {
                return Some((cc, &digits[end..]));
            }
        }
        None
    }

    /// `normalize.fast_normalize_phone`, step for step.
    pub fn e164(&self, py: Python<'_>, value: &str, region: &str) -> PyResult<Phone> {
        let bytes = value.as_bytes();
        if bytes.len() > MAX_INPUT {
            return Ok(Phone::Defer);
        }
        // The shape [ (]*(?:(\+)[ (]*)?([0-9][0-9 ().-]*), by hand.
        let skip = |at: usize| {
            at + bytes[at..]
                .iter()
                .take_while(|&&b| b == b' ' || b == b'(')
                .count()
        };
        let mut at = skip(0);
        let plus = bytes.get(at) == Some(&b'+');
        if plus {
            at = skip(at + 1);
        }
        let rest = &bytes[at..];
        if !rest.first().is_some_and(u8::is_ascii_digit)
            || !rest
                .iter()
                .all(|&b| b.is_ascii_digit() || matches!(b, b' ' | b'(' | b')' | b'.' | b'-'))
        {
            return Ok(Phone::Defer);
        }
        let Some(&home_cc) = self.region_cc.get(region) else {
            return Ok(Phone::Defer);
        };
        let Some(home_country) = self.country(py, home_cc)? else {
            return Ok(Phone::Defer);
        };
        let Some(home) = home_country.plans.iter().find(|plan| plan.region == region) else {
            return Ok(Phone::Defer);
        };
        let digits: Vec<u8> = rest.iter().copied().filter(u8::is_ascii_digit).collect();
        // Fewer digits: parse() rejects or takes the two-digit branch; more:
        // certainly too long. Either way the library decides.
        if !(3..=MAX_CC_DIGITS + MAX_NSN).contains(&digits.len()) {
            return Ok(Phone::Defer);
        }
        // Without "+", a dropped country code switches to the code's main
        // region, as parse() does; otherwise the default region's plan stays.
        let mut on_main = plus;
        let (cc, mut national, country) = if plus {
            // No known code: parse() retries without the "+".
            let Some((cc, national)) = self.split_country_code(&digits) else {
                return Ok(Phone::Defer);
            };
            let Some(country) = self.country(py, cc)? else {
                return Ok(Phone::Defer);
            };
            (cc, national.to_vec(), country)
        } else {
            if home.idd.as_ref().is_some_and(|idd| idd.is_match(&digits)) {
                return Ok(Phone::Defer);
            }
            let mut national = digits.clone();
            if let Some(after) = digits.strip_prefix(home.cc_str.as_slice()) {
                // The default region's country code written without "+":
                // parse() drops it when that makes the number fit better.
                let candidate = home.strip_national_prefix(after);
                if (!home.general(&digits) && home.general(&candidate))
                    || home.verdict(&digits) == TOO_LONG
                {
                    national = candidate;
                    on_main = true;
                }
            }
            (home.cc, national, home_country.clone())
        };
        let plan = if on_main { country.main() } else { home };
        if national.len() < MIN_NSN {
            return Ok(Phone::Defer);
        }
        let stripped = plan.strip_national_prefix(&national);
        // parse() keeps the national prefix when what is left is not a
        // possible length for the region (it may be a short code).
        if matches!(plan.verdict(&stripped), POSSIBLE | TOO_LONG) {
            national = stripped;
        }
        if national.len() > MAX_NSN {
            return Ok(Phone::Defer);
        }
        if !country.is_valid(&national) {
            return Ok(Phone::Invalid);
        }
        let mut e164 = String::with_capacity(1 + 3 + national.len());
        e164.push('+');
        e164.push_str(&cc.to_string());
        e164.push_str(std::str::from_utf8(&national).expect("ASCII digits"));
        Ok(Phone::Valid(e164))
    }
}

#[pymethods]
impl Phones {
    /// `region_cc`: each supported region's country calling code;
    /// `country_codes`: every calling code, geographic or not; `source(cc)`:
    /// the plans' sources of the regions sharing `cc` (main region first),
    /// or None to leave the code to the library.
    #[new]
    fn new(
        region_cc: HashMap<String, u32>,
        country_codes: HashSet<u32>,
        source: Py<PyAny>,
    ) -> Self {
        Phones {
            region_cc,
            country_codes,
            source,
            countries: Mutex::new(HashMap::new()),
        }
    }

    /// `normalize.fast_normalize_phone`: the E.164 form of a valid number,
    /// False for an invalid one, None to leave the number to the library.
    fn normalize<'py>(
        &self,
        py: Python<'py>,
        value: &str,
        region: &str,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(match self.e164(py, value, region)? {
            Phone::Valid(e164) => Some(pyo3::types::PyString::new(py, &e164).into_any()),
            Phone::Invalid => Some(pyo3::types::PyBool::new(py, false).to_owned().into_any()),
            Phone::Defer => None,
        })
    }
}
