"""Support-ticket triage on Microsoft Agent Framework: the port of ../standard (a promptflow DAG).

How the DAG maps (docs/migration.md):
    summarize (llm node, variants full | brief)    -> an `Ask` executor around an Agent
    classify  (llm node, variants careful | terse) -> an `Ask` executor around an Agent
    normalize (python node)                        -> `Normalize` executor, plain Python
    node_variants / default_variant_id             -> VARIANTS: named parameter sets per step
    inputs / outputs                               -> INPUTS / OUTPUTS, the workflow's dict in/out
    connection: llm                                -> llm.chat_client("llm", model): genaiops
                                                      points it at the configured endpoint
The prompts are the DAG's, word for word, so both engines send the same requests.
"""

import re

from agent_framework import Agent, Executor, WorkflowBuilder, WorkflowContext, handler

INPUTS = ("text",)
OUTPUTS = ("category", "summary")

SUMMARIZE_FULL = (
    "You are a support triage assistant. Summarize the customer's ticket in one sentence.\n"
    "Keep product names, amounts, error messages and what the customer asks for."
)
SUMMARIZE_BRIEF = (
    "You are a support triage assistant. State the customer's main problem in at most ten words."
)
CLASSIFY_CAREFUL = (
    "You are a meticulous support triage agent. Sort the ticket into exactly one category:\n"
    "- billing: payments, invoices, refunds, charges, prices, discounts\n"
    "- technical: bugs, errors, crashes, slowness, API or integration problems\n"
    "- account: login, passwords, 2FA, profile and user management, account deletion\n"
    "- shipping: delivery, tracking, damaged parcels, returns of physical goods\n"
    "- other: anything else (sales, feedback, feature ideas, jobs, partnerships)\n"
    "Think step by step: work out what the customer needs, compare it with each definition,\n"
    "then answer with the category name only, in lowercase."
)
CLASSIFY_TERSE = (
    "Classify the support ticket. Reply with one word: billing, technical, account, shipping or other."
)

# node_variants of ../standard/flow.dag.yaml as named parameter sets: genaiops selects them like
# DAG variants (defaults | all | grid | summarize.brief+classify.terse) and passes the merged
# parameters of the chosen ones to build().
VARIANTS = {
    "summarize": {
        "default": "full",
        "variants": {
            "full": {"summarize_instructions": SUMMARIZE_FULL, "summarize_temperature": 0.2,
                     "summarize_max_tokens": 120},
            "brief": {"summarize_instructions": SUMMARIZE_BRIEF, "summarize_temperature": 0.0,
                      "summarize_max_tokens": 30},
        },
    },
    "classify": {
        "default": "careful",
        "variants": {
            "careful": {"classify_instructions": CLASSIFY_CAREFUL, "classify_temperature": 0.0},
            "terse": {"classify_instructions": CLASSIFY_TERSE, "classify_temperature": 0.7},
        },
    },
}

CATEGORIES = ("billing", "technical", "account", "shipping", "other")
SYNONYMS = {
    "payment": "billing", "payments": "billing", "invoice": "billing", "refund": "billing",
    "tech": "technical", "bug": "technical", "login": "account", "delivery": "shipping",
    "returns": "shipping",
}


def normalize(label: str) -> str:
    """Whatever the model said, as one of the known categories (the DAG's normalize node)."""
    words = re.findall(r"[a-z]+", (label or "").lower())
    for word in words:
        if word in CATEGORIES:
            return word
    for word in words:
        if word in SYNONYMS:
            return SYNONYMS[word]
    return "other"


class Ask(Executor):
    """An llm node: asks its Agent `prompt` filled from the state, adds the answer as `key`."""

    def __init__(self, id: str, agent: Agent, options: dict, prompt: str, key: str):
        super().__init__(id=id)
        self.agent, self.options, self.prompt, self.key = agent, options, prompt, key

    @handler
    async def run(self, state: dict, ctx: WorkflowContext[dict]) -> None:
        reply = await self.agent.run(self.prompt.format(**state), options=self.options)
        await ctx.send_message({**state, self.key: reply.text})


class Normalize(Executor):
    def __init__(self):
        super().__init__(id="normalize")

    @handler
    async def run(self, state: dict, ctx: WorkflowContext[dict, dict]) -> None:
        await ctx.yield_output({"category": normalize(state["label"]), "summary": state["summary"]})


def build(llm, *, model="gpt-4o-mini",
          summarize_instructions=SUMMARIZE_FULL, summarize_temperature=0.2, summarize_max_tokens=120,
          classify_instructions=CLASSIFY_CAREFUL, classify_temperature=0.0, classify_max_tokens=10):
    """The triage workflow for one variant; `model` is the model or Azure deployment name."""
    client = llm.chat_client("llm", model)
    summarize = Ask("summarize", Agent(client, summarize_instructions, name="summarize"),
                    {"temperature": summarize_temperature, "max_tokens": summarize_max_tokens},
                    "Ticket to summarize: {text}", "summary")
    classify = Ask("classify", Agent(client, classify_instructions, name="classify"),
                   {"temperature": classify_temperature, "max_tokens": classify_max_tokens},
                   "Ticket summary: {summary}", "label")
    finish = Normalize()
    return (WorkflowBuilder(name="ticket_triage", start_executor=summarize)
            .add_edge(summarize, classify).add_edge(classify, finish).build())
