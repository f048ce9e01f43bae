"""Turn whatever the model said into one of the known categories, so downstream code never sees
'Billing.', 'Category: billing' or an invented label."""

import re

from promptflow.core import tool

CATEGORIES = ("billing", "technical", "account", "shipping", "other")
SYNONYMS = {
    "payment": "billing",
    "payments": "billing",
    "invoice": "billing",
    "refund": "billing",
    "tech": "technical",
    "bug": "technical",
    "login": "account",
    "delivery": "shipping",
    "returns": "shipping",
}


@tool
def normalize(label: str) -> str:
    words = re.findall(r"[a-z]+", (label or "").lower())
    for word in words:
        if word in CATEGORIES:
            return word
    for word in words:
        if word in SYNONYMS:
            return SYNONYMS[word]
    return "other"
