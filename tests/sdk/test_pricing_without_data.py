"""Without the pricing extra: local pricing says what to install, and a call's cost is unknown
rather than a failure (runs in the sdk_minimal session too)."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_DATA = (
    "import sys; sys.modules['genai_prices'] = None; sys.modules['genai_prices.data'] = None\n"
)


def test_pricing_without_genai_prices_raises_pricing_unavailable_naming_the_extra() -> None:
    code = WITHOUT_DATA + (
        "from agentops_sdk import pricing\n"
        "from agentops_sdk.errors import PricingUnavailable\n"
        "try:\n"
        "    pricing.price('gpt-4o', pricing.Usage(1, 1))\n"
        "except PricingUnavailable as exc:\n"
        "    assert 'agentops-hub[pricing]' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_calls_cost_is_none_without_the_price_data() -> None:
    code = WITHOUT_DATA + (
        "import agentops_sdk as agentops\n"
        "from agentops_sdk.enforcement import CallResult\n"
        "agentops.init(exporter='memory')\n"
        "with agentops.run('a'):\n"
        "    with agentops.span('ask', kind='llm') as span:\n"
        "        span.set_usage(model='gpt-4o', input_tokens=10, output_tokens=5)\n"
        "        span.end_ns = span.start_ns\n"
        "        assert CallResult(span, None).cost is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
