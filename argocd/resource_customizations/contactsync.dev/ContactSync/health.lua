-- Argo CD health of a ContactSync (contactsync.dev/v1alpha1), from the
-- operator's standard conditions. First match wins:
--   paused annotation            -> Suspended   (the operator leaves it alone)
--   Stalled=True for this spec   -> Degraded    (the spec can never work as is)
--   generation not yet observed  -> Progressing (status describes an older spec)
--   Reconciling=True             -> Progressing (waiting for a Secret, Prefect, ...)
--   spec.suspend                 -> Suspended   (schedule paused in Prefect)
--   Ready=True                   -> Healthy
--   Ready=False                  -> Degraded;  no Ready yet -> Progressing
local hs = {}

local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then
        return c
      end
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

-- A condition set for the current spec. status.observedGeneration moves only
-- on a complete reconcile, each condition's own one whenever it is set.
local function current(c)
  return c ~= nil and (c.observedGeneration == nil or c.observedGeneration == obj.metadata.generation)
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if c ~= nil and c.reason ~= nil then
    return c.reason
  end
  return fallback
end

local annotations = obj.metadata.annotations or {}
if annotations["contactsync.dev/reconcile"] == "paused" then
  hs.status = "Suspended"
  hs.message = "Reconciliation paused (annotation contactsync.dev/reconcile: paused)"
  return hs
end

local ready = condition("Ready")
local stalled = condition("Stalled")
if is_true(stalled) and current(stalled) then
  hs.status = "Degraded"
  -- Ready says what is wrong (the field and the error); Stalled only that it is final.
  if ready ~= nil and ready.status == "False" and current(ready) then
    hs.message = describe(ready, "Stalled")
  else
    hs.message = describe(stalled, "Stalled")
  end
  return hs
end

local reconciling = condition("Reconciling")
local observed = obj.status ~= nil and obj.status.observedGeneration or nil
if observed == nil or observed ~= obj.metadata.generation or is_true(reconciling) then
  hs.status = "Progressing"
  if is_true(reconciling) and current(reconciling) then
    hs.message = describe(reconciling, "Reconciling")
  else
    hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  end
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Syncs suspended (spec.suspend)"
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
