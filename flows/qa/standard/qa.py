"""Grounded question answering as a flex flow: a class whose init values are the variant knobs.

`model`, `temperature` and `style` are init parameters, so experiment variants are plain
parameter sets (`variants: [{name, init: {...}}]`) instead of DAG node variants.
The connection is looked up by name once per worker and its type picks the prompty model
configuration, so switching `LLM_API_TYPE` between open_ai and azure_open_ai needs no flow edit.

No `from __future__ import annotations` here: promptflow reads `__init__` annotations'
`__name__` to find connection parameters, and string annotations break that. The code also
stays Python 3.9 compatible because `pf flow build` images use Python 3.9.
"""

from dataclasses import dataclass
from pathlib import Path

from promptflow.connections import AzureOpenAIConnection, OpenAIConnection
from promptflow.core import AzureOpenAIModelConfiguration, OpenAIModelConfiguration, Prompty

PROMPTY = Path(__file__).resolve().parent / "answer.prompty"
STYLES = ("concise", "detailed")


@dataclass
class Answer:
    answer: str


def model_configuration(connection: str, model: str):
    """The prompty configuration for the stored connection `connection` (deployment = `model` on Azure)."""
    from promptflow.client import PFClient  # the local connection store (also inside built images)

    conn = PFClient().connections.get(name=connection, with_secrets=True)
    if isinstance(conn, AzureOpenAIConnection):
        return AzureOpenAIModelConfiguration.from_connection(conn, azure_deployment=model)
    if isinstance(conn, OpenAIConnection):
        return OpenAIModelConfiguration.from_connection(conn, model=model)
    raise TypeError(
        f"connection {connection!r} is a {type(conn).__name__}; "
        "the qa flow needs an OpenAIConnection or an AzureOpenAIConnection"
    )


class GroundedQA:
    def __init__(
        self,
        model: str = "gpt-4o-mini",
        temperature: float = 0.0,
        style: str = "concise",
        max_tokens: int = 200,
        connection: str = "llm",
    ):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.style = style
        self._prompty = Prompty.load(
            source=PROMPTY,
            model={
                "configuration": model_configuration(connection, model),
                "parameters": {"temperature": float(temperature), "max_tokens": int(max_tokens)},
            },
        )

    def __call__(self, question: str, context: str) -> Answer:
        reply = self._prompty(question=question, context=context, style=self.style)
        return Answer(answer=str(reply).strip())
