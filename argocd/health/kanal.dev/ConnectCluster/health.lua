-- ArgoCD health check for kanal.dev/ConnectCluster (resource_customizations layout).
-- Register it in argocd-cm as resource.customizations.health.kanal.dev_ConnectCluster
-- (see docs/argocd.md). ArgoCD runs it with gopher-lua (Lua 5.1), `obj` is the live
-- object, and the result is {status = ..., message = ...}.
--
--   Progressing  no status yet, the operator has not observed the latest spec
--                (status.observedGeneration ~= metadata.generation), or Ready=False
--                while workers start
--   Degraded     Ready=False with reason InvalidConfiguration
--   Suspended    spec.replicas is 0 (the cluster is scaled to zero on purpose)
--   Healthy      Ready=True for the latest generation
local hs = {}

local function ready_condition(status)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

-- Reasons of Ready=False that last until the manifest changes. ArgoCD's Lua has no
-- string library, so they are listed rather than matched.
local broken = {InvalidConfiguration = true}

local status = obj.status
local generation = obj.metadata.generation

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Kanal operator to reconcile the cluster"
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Kanal operator to observe generation " .. tostring(generation)
  return hs
end

local ready = ready_condition(status)
if ready ~= nil and ready.status == "False" and broken[ready.reason] then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
if obj.spec ~= nil and obj.spec.replicas == 0 then
  hs.status = "Suspended"
  hs.message = "Scaled to zero workers"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Workers ready"
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  local want = 1
  if obj.spec ~= nil and obj.spec.replicas ~= nil then
    want = obj.spec.replicas
  end
  hs.message = "Waiting for workers: " .. tostring(status.readyReplicas or 0) .. "/" ..
    tostring(want) .. " ready"
end
return hs
