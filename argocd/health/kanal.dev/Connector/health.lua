-- ArgoCD health check for kanal.dev/Connector (resource_customizations layout).
-- Register it in argocd-cm as resource.customizations.health.kanal.dev_Connector
-- (see docs/argocd.md). ArgoCD runs it with gopher-lua (Lua 5.1), `obj` is the live
-- object, and the result is {status = ..., message = ...}.
--
--   Progressing  no status yet, or the operator has not observed the latest spec
--                (status.observedGeneration ~= metadata.generation), or Ready=False
--                for a reason that resolves by itself (NoWorkers, ClusterNotFound,
--                WaitingForPermissions, tasks starting)
--   Degraded     a task or the connector is FAILED, or Ready=False with reason
--                InvalidConfiguration, ConnectorFailed, TaskFailed or
--                ConfigHashMismatch
--   Suspended    spec.state paused or stopped, and the operator confirms it
--   Healthy      Ready=True for the latest generation, tasks RUNNING
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
local broken = {InvalidConfiguration = true, ConnectorFailed = true, TaskFailed = true,
                ConfigHashMismatch = true}

local status = obj.status
local generation = obj.metadata.generation
local target = "running"
if obj.spec ~= nil and obj.spec.state ~= nil then
  target = obj.spec.state
end

if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Kanal operator to reconcile the connector"
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Kanal operator to observe generation " .. tostring(generation)
  return hs
end

local ready = ready_condition(status)
local failed = {}
if status.tasks ~= nil then
  for _, task in ipairs(status.tasks) do
    if task.state == "FAILED" then
      table.insert(failed, tostring(task.id))
    end
  end
end

if #failed > 0 then
  hs.status = "Degraded"
  local detail = "task(s) " .. table.concat(failed, ", ") .. " FAILED"
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    detail = ready.message
  end
  hs.message = detail
  return hs
end
if ready ~= nil and ready.status == "False" and broken[ready.reason] then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
if status.state == "FAILED" then
  hs.status = "Degraded"
  hs.message = "The connector is FAILED"
  return hs
end

if target == "paused" or target == "stopped" then
  if ready ~= nil and ready.status == "True" then
    hs.status = "Suspended"
    hs.message = ready.message or ("Connector " .. target)
    return hs
  end
  hs.status = "Progressing"
  hs.message = "Waiting for the connector to be " .. target
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    hs.message = ready.message
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Running"
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Waiting for the connector's tasks to run"
end
return hs
