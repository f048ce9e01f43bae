"""The LLM gateway: a loopback proxy every LLM call of a command goes through, whatever engine
makes it, so one scheduler sees them all.

The phase's LLM session (`genaiops.gateway.llm_session`) starts it and points every connection at it,
the way it points them at the simulator; engines know nothing of it. Per upstream endpoint and
deployment it keeps the quota (token buckets for RPM and TPM, charged by estimated tokens),
AIMD concurrency on 429s with `retry-after(-ms)` honoured, and separate pools for the flow under
test and the LLM-judge evaluators (`scheduler`). It retries within `runtime.retries` (attempts
and total time) and then answers with the last failure marked not to be retried (`server`).
Quotas come from config (`rpm`, `tpm` per connection) or are learned from `x-ratelimit-*`
headers (`limits`). Keys and bodies pass through and are never logged.

Neither the flow nor the endpoint is trusted: bodies are bounded, every call ends by one deadline
(`deadline`), estimates are checked, capped and refunded, and bad requests get a JSON 4xx
(docs/trust.md lists the bounds).
"""

from genaiops.gateway.limits import Quota
from genaiops.gateway.scheduler import SchedulerSettings
from genaiops.gateway.server import GATEWAY_NAME, LLMGateway, RetryBounds

FLOW_POOL = "flow"  # the flow under test (experiment)
EVALUATOR_POOL = "evaluators"  # LLM-judge evaluation flows (evaluate)

__all__ = ["EVALUATOR_POOL", "FLOW_POOL", "GATEWAY_NAME", "LLMGateway", "Quota", "RetryBounds",
           "SchedulerSettings"]
