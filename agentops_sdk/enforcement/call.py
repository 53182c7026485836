"""What the enforcer's stages see: the call before it runs, and how it went after."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from decimal import Decimal

    from agentops_sdk.contract.decisions import Decision
    from agentops_sdk.contract.errors import ApprovalDenied
    from agentops_sdk.enforcement.stage import Stage
    from agentops_sdk.spans import Span, Status

__all__ = ["CallInfo", "CallResult", "Substitution"]


class CallInfo:
    """What a stage (or a user guard) knows about a call that is about to run.

    The enforcer also keeps here how far the call got: the stages it passed (``stages[:reached]``,
    whose ``after`` hooks run when it ends), the decisions recorded on its span, and a
    ``require_approval`` still waiting for the approval stage.
    """

    __slots__ = (
        "_arguments",
        "_defaults",
        "_param_names",
        "_state",
        "approval",
        "args",
        "decision",
        "kwargs",
        "reached",
        "replacement",
        "span",
        "stages",
    )

    def __init__(
        self,
        span: Span,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        param_names: tuple[str, ...] = (),
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.span = span
        self.args = args
        self.kwargs = kwargs
        self._param_names = param_names
        self._defaults = defaults
        self._arguments: dict[str, Any] | None = None
        self._state: dict[str, Any] | None = None
        self.stages: tuple[Stage, ...] = ()
        """The stages this call passes, fixed when it starts."""
        self.reached = 0
        """How many of ``stages`` it has been through."""
        self.decision: Decision | None = None
        """The last decision recorded for it (None while every stage allowed it)."""
        self.approval: Decision | None = None
        """A ``require_approval`` decision the approval stage has not settled yet."""
        self.replacement: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        """The positional and keyword arguments the call must run with instead of its own
        (an approval with edited arguments); None: its own."""

    @property
    def kind(self) -> str:
        """``agent``, ``tool``, ``step`` or ``llm``."""
        return self.span.kind

    @property
    def name(self) -> str:
        """The tool, step or agent name; for LLM calls, the span name."""
        return self.span.name

    @property
    def agent(self) -> str:
        """The agent whose run this call belongs to."""
        return self.span.run.agent

    @property
    def environment(self) -> str:
        """``prod``, ``staging``, ``test`` or ``dev``."""
        return self.span.run.environment

    @property
    def tags(self) -> tuple[str, ...]:
        """The call's own tags followed by its run's, each once (a run's root shares its tags)."""
        return tuple(dict.fromkeys(self.span.tags + self.span.run.tags))

    @property
    def model(self) -> str | None:
        """The model of an LLM call, when known before the call."""
        return self.span.model

    @property
    def arguments(self) -> dict[str, Any]:
        """The call's arguments by parameter name (positional ones named from the signature),
        with the default value of each parameter the call left out."""
        if self._arguments is None:
            named = dict(self._defaults) if self._defaults else {}
            named.update(
                (name, value)
                for name, value in zip(self._param_names, self.args, strict=False)
                if name  # "" stands for self/cls
            )
            extra = self.args[len(self._param_names) :]
            if extra:
                named["*args"] = extra
            named.update(self.kwargs)
            self._arguments = named
        return self._arguments

    def rebind(
        self, edited: Mapping[str, Any], frozen: Mapping[str, Any] | None = None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments that call the function with ``edited`` (by
        name, as :attr:`arguments` names them): each positional slot the call filled takes
        its new value, other names go by keyword. A name ``edited`` leaves out keeps its
        value; one whose value equals ``frozen`` (the arguments as JSON when they were
        frozen) keeps the call's own object rather than its JSON form."""
        original = self.arguments
        frozen = frozen or {}
        left = {
            name: value
            for name, value in edited.items()
            if name not in original or name not in frozen or frozen[name] != value
        }
        names = self._param_names
        args: list[Any] = []
        for index, value in enumerate(self.args[: len(names)]):
            name = names[index]
            args.append(left.pop(name, value) if name else value)
        extra = left.pop("*args", None)
        args.extend(self.args[len(names) :] if extra is None else extra)
        kwargs = dict(self.kwargs)
        kwargs.update(left)
        return tuple(args), kwargs

    @property
    def state(self) -> dict[str, Any]:
        """Scratch space for stages, kept from ``before`` to ``after`` (a budget's reservation):
        each stage keys its entries by its own name."""
        if self._state is None:
            self._state = {}
        return self._state


class CallResult:
    """How a call ended, for the stages' ``after`` hooks (a budget reconciles its spend here)."""

    __slots__ = (
        "_cost",
        "duration_ns",
        "error",
        "input_tokens",
        "model",
        "output_tokens",
        "span",
        "status",
    )

    def __init__(self, span: Span, error: BaseException | None) -> None:
        usage = span.usage
        self.status: Status = span.status
        """``ok``, ``error``, ``blocked`` (a stage refused it) or ``cancelled``."""
        self.error = error
        """The exception the call ended with, if any (for ``blocked``, the refusal)."""
        self.model = span.model
        self.input_tokens = None if usage is None else usage["input_tokens"]
        self.output_tokens = None if usage is None else usage["output_tokens"]
        self.duration_ns = 0 if span.end_ns is None else span.end_ns - span.start_ns
        self.span = span
        self._cost: Any = _UNPRICED

    @property
    def cost(self) -> Decimal | None:
        """The call's cost in USD, priced in the process on first read (:mod:`agentops_sdk.
        pricing`, the ``pricing`` extra) and recorded on its span, or the cost the span was
        given. None: no model or usage, a model the price data does not know, or no extra."""
        if self._cost is _UNPRICED:
            self._cost = self.span.cost if self.span.cost is not None else self._priced()
        return self._cost  # type: ignore[no-any-return]

    def _priced(self) -> Decimal | None:
        span = self.span
        if span.model is None or span.usage is None:
            return None
        try:
            from agentops_sdk import pricing

            cost = pricing.price(span.model, span.usage, provider=span.provider)
        except Exception:  # no extra, or data it cannot read: unpriced, never a failed call
            return None
        span.cost = cost
        return cost


_UNPRICED: Any = object()


class Substitution(Exception):
    """Raised out of ``Client.start``/``aenforce`` to a decorator's wrapper (and nowhere
    else) when the call must not run as it was made.

    Either run it with ``replacement`` (positional and keyword arguments: an approval with
    edited arguments; ``span`` stays open), or, with ``refused`` set, return
    ``refused.result`` without running (a rejection the rule returns as the call's result;
    ``span`` is closed as blocked, and a wrapper that cannot return it raises ``refused``).
    """

    def __init__(
        self,
        span: Span,
        replacement: tuple[tuple[Any, ...], dict[str, Any]] | None = None,
        refused: ApprovalDenied | None = None,
    ) -> None:
        super().__init__(span.name)
        self.span = span
        self.replacement = replacement
        self.refused = refused
