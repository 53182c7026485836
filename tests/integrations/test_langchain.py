"""The LangChain integration: LangChain runs become the AgentOps span tree, guarded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from agentops_langchain import AgentOpsCallbackHandler, LangChainIntegration
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.enforcement import LocalHub
from agentops_sdk.exporters.memory import MemoryExporter
from agentops_sdk.guards import CallInfo
from agentops_sdk.schema import SpanEvent
from agentops_sdk.testing import CapturedEvents, capture_events
from tests.sdk.fake_controls import control, control_set

pytestmark = pytest.mark.extras

Tree = list[tuple[str, str, "Tree"]]


@pytest.fixture
def langchain() -> Iterator[None]:
    """The integration enabled as ``init()`` does it, disabled after the test."""
    assert integrations.enable("langchain")
    yield
    integrations.disable("langchain")


def tree(captured: CapturedEvents) -> Tree:
    """The recorded spans as nested ``(kind, name, children)``, children in start order."""
    spans = captured.spans

    def below(parent: SpanEvent | None) -> Tree:
        parent_id = None if parent is None else parent.id
        return [
            (span.kind, span.name, below(span)) for span in spans if span.parent_id == parent_id
        ]

    return below(None)


def chat_model(*messages: AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(messages))


def answer(text: str, *, input_tokens: int = 0, output_tokens: int = 0) -> AIMessage:
    return AIMessage(
        text,
        usage_metadata={
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
        response_metadata={"model_name": "fake-model-1"},
    )


def deny_tool(name: str) -> Any:
    def guard(call: CallInfo) -> None:
        if call.kind == "tool" and call.name == name:
            raise agentops.PolicyViolation(f"{name} is not allowed", rule="no-" + name)

    return guard


@tool
def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return f"sunny in {city}"


# -- setup ----------------------------------------------------------------------------------


LATE_IMPORT = """
import json, sys
import agentops_sdk as agentops
import agentops_langchain
assert "langchain_core" not in sys.modules, "importing the integration imported LangChain"
client = agentops.init(exporter="memory", spool=False, integrations=["langchain"])
assert "langchain_core" not in sys.modules, "init() imported LangChain"
from langchain_core.runnables import RunnableLambda
RunnableLambda(lambda x: x, name="late").invoke(1)
client.flush(5)
print(json.dumps([event["name"] for event in client.exporter.events if event["type"] == "span"]))
"""


def test_init_leaves_langchain_unimported_and_instruments_it_when_it_is_imported() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LATE_IMPORT], check=True, capture_output=True, text=True
    )
    assert json.loads(result.stdout) == ["late"]


def test_init_records_langchain_runs_with_no_callback_passed() -> None:
    client = agentops.init(
        exporter="memory", environment="test", spool=False, integrations=["langchain"]
    )
    assert client is not None
    try:
        assert integrations.enabled() == ["langchain"]
        assert integrations.registered()["langchain"] is LangChainIntegration
        (RunnableLambda(lambda text: text.upper(), name="shout")).invoke("hi")
        assert client.flush(5).completed
        assert isinstance(client.exporter, MemoryExporter)
        spans = [event for event in client.exporter.events if event["type"] == "span"]
    finally:
        integrations.disable("langchain")
        agentops.shutdown(1)
    assert [(span["kind"], span["name"], span["output"]) for span in spans] == [
        ("step", "shout", "HI")
    ]


def test_an_explicit_handler_records_without_the_integration(
    agentops_events: CapturedEvents,
) -> None:
    model = FakeListChatModel(responses=["hello"])
    assert model.invoke("hi", config={"callbacks": [AgentOpsCallbackHandler()]}).content == "hello"
    assert tree(agentops_events) == [("llm", "FakeListChatModel", [])]


def test_an_explicit_handler_with_the_integration_enabled_records_each_run_once(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    chain = RunnableLambda(lambda text: text, name="echo") | FakeListChatModel(responses=["ok"])
    chain.invoke("hi", config={"callbacks": [AgentOpsCallbackHandler()]})
    assert tree(agentops_events) == [
        ("step", "RunnableSequence", [("step", "echo", []), ("llm", "FakeListChatModel", [])])
    ]


def test_disabling_the_integration_stops_recording_runs_already_under_way(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    def inner(text: str) -> str:
        return text

    def outer(text: str) -> str:
        integrations.disable("langchain")
        return RunnableLambda(inner).invoke(text)

    RunnableLambda(outer).invoke("first")
    RunnableLambda(inner).invoke("second")
    assert tree(agentops_events) == [("step", "outer", [])]


def test_runs_started_in_a_new_thread_are_recorded(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    worker = threading.Thread(
        target=RunnableLambda(lambda x: x, name="in_thread").invoke, args=(1,)
    )
    worker.start()
    worker.join()
    assert tree(agentops_events) == [("step", "in_thread", [])]


# -- the tree -------------------------------------------------------------------------------


def test_a_prompt_model_parser_chain_records_each_part_under_the_sequence(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    prompt = ChatPromptTemplate.from_messages([("human", "Tell me about {topic}")])
    chain = prompt | FakeListChatModel(responses=["cats purr"]) | StrOutputParser()
    assert chain.invoke({"topic": "cats"}) == "cats purr"
    assert tree(agentops_events) == [
        (
            "step",
            "RunnableSequence",
            [
                ("step", "ChatPromptTemplate", []),
                ("llm", "FakeListChatModel", []),
                ("step", "StrOutputParser", []),
            ],
        )
    ]
    sequence = agentops_events.span("RunnableSequence")
    assert (sequence.input, sequence.output) == ({"topic": "cats"}, "cats purr")


def test_a_chain_called_inside_an_agent_function_nests_under_its_span(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    @agentops.agent
    def researcher(topic: str) -> str:
        def notes(subject: str) -> str:
            return f"notes on {subject}"

        return RunnableLambda(notes).invoke(topic)

    assert researcher("owls") == "notes on owls"
    assert tree(agentops_events) == [("agent", "researcher", [("step", "notes", [])])]
    (run,) = agentops_events.runs
    assert run.agent == "researcher"


def test_parallel_branches_are_children_of_the_parallel_runnable(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    parallel = RunnableParallel(
        upper=RunnableLambda(lambda x: x.upper(), name="upper"),
        lower=RunnableLambda(lambda x: x.lower(), name="lower"),
    )
    assert parallel.invoke("Hi") == {"upper": "HI", "lower": "hi"}
    ((kind, name, children),) = tree(agentops_events)
    assert (kind, name) == ("step", "RunnableParallel<upper,lower>")
    assert sorted(children) == [("step", "lower", []), ("step", "upper", [])]


def test_each_input_of_a_batch_is_its_own_run(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    def double(number: int) -> int:
        return number * 2

    def increment(number: int) -> int:
        return number + 1

    chain = RunnableLambda(double) | RunnableLambda(increment)
    assert chain.batch([1, 2, 3]) == [3, 5, 7]
    shapes = tree(agentops_events)
    assert len(agentops_events.runs) == 3
    assert (
        shapes
        == [("step", "RunnableSequence", [("step", "double", []), ("step", "increment", [])])] * 3
    )


def test_a_langgraph_graph_is_an_agent_with_its_nodes_as_steps(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    class State(TypedDict):
        count: int

    graph = StateGraph(State)
    graph.add_node("increment", lambda state: {"count": state["count"] + 1})
    graph.add_node("double", lambda state: {"count": state["count"] * 2})
    graph.add_edge(START, "increment")
    graph.add_edge("increment", "double")
    graph.add_edge("double", END)
    assert graph.compile().invoke({"count": 1}) == {"count": 4}
    assert tree(agentops_events) == [
        ("agent", "LangGraph", [("step", "increment", []), ("step", "double", [])])
    ]
    (run,) = agentops_events.runs
    assert (run.agent, run.status) == ("LangGraph", "ok")


def test_a_retriever_is_a_step_marked_with_the_retriever(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    class Library(BaseRetriever):
        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[Document]:
            return [Document(page_content=f"a book about {query}")]

    Library().invoke("whales")
    span = agentops_events.span("Library")
    assert (span.kind, span.input, span.attributes) == ("step", "whales", {"retriever": "Library"})
    assert span.output[0]["page_content"] == "a book about whales"


# -- models ---------------------------------------------------------------------------------


def test_a_chat_model_call_records_model_provider_and_token_usage(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    model = chat_model(answer("hello there", input_tokens=12, output_tokens=3))
    model.invoke([HumanMessage("hi")])
    span = agentops_events.span("GenericFakeChatModel")
    assert span.kind == "llm"
    assert span.output == "hello there"
    assert span.llm is not None
    assert (span.llm.model, span.llm.provider) == ("fake-model-1", "genericfakechatmodel")
    assert (span.llm.input_tokens, span.llm.output_tokens) == (12, 3)
    (run,) = agentops_events.runs
    assert (run.input_tokens, run.output_tokens) == (12, 3)


def test_an_llm_call_records_its_prompt_and_completion(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    assert FakeListLLM(responses=["a completion"]).invoke("a prompt") == "a completion"
    span = agentops_events.span("FakeListLLM")
    assert (span.kind, span.input, span.output) == ("llm", "a prompt", "a completion")


def test_a_streamed_answer_is_one_llm_span_with_the_whole_text(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    chunks = [chunk.content for chunk in chat_model(answer("hello there")).stream("hi")]
    assert "".join(str(chunk) for chunk in chunks) == "hello there"
    assert len(chunks) > 1
    (span,) = agentops_events.spans
    assert (span.kind, span.status, span.output) == ("llm", "ok", "hello there")


@pytest.fixture
def governed(tmp_path: Path) -> Iterator[tuple[CapturedEvents, LocalHub]]:
    """A client obeying the controls a ``LocalHub`` publishes (the hub's stream, played)."""
    hub = LocalHub()
    with capture_events(
        hub_url="http://hub.invalid", api_key="ak_test", hub_source=hub, spool_dir=tmp_path
    ) as events:
        yield events, hub


def kill_everything(events: CapturedEvents, hub: LocalHub) -> str:
    controls = control_set(control("killed", reason="runaway spend"))
    hub.publish("controls", controls)
    link = events.client.enforcer.link
    assert link.wait_until(lambda: link.snapshot.get("controls") is controls, 5)
    return str(controls.controls[0].id)


def test_a_kill_stops_a_streamed_answer_at_its_next_token(
    langchain: None, governed: tuple[CapturedEvents, LocalHub]
) -> None:
    events, hub = governed
    stream = chat_model(answer("one two three four")).stream("hi")
    assert next(stream).content == "one"

    kill = kill_everything(events, hub)

    with pytest.raises(agentops.AgentKilled, match="runaway spend"):
        next(stream)
    (span,) = events.spans
    assert (span.kind, span.status) == ("llm", "blocked")
    assert [(d.stage, d.rule) for d in span.decisions] == [("controls", kill)]


async def test_a_kill_stops_an_async_streamed_answer_at_its_next_token(
    langchain: None, governed: tuple[CapturedEvents, LocalHub]
) -> None:
    events, hub = governed
    stream = chat_model(answer("one two three four")).astream("hi")
    assert (await stream.__anext__()).content == "one"

    kill_everything(events, hub)

    with pytest.raises(agentops.AgentKilled):
        await stream.__anext__()
    (span,) = events.spans
    assert span.status == "blocked"


async def test_async_runs_keep_their_parents(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    model = chat_model(answer("first", input_tokens=2, output_tokens=1), answer("second"))
    chain = RunnableLambda(lambda text: text, name="prepare") | model | StrOutputParser()

    @agentops.agent
    async def assistant() -> list[str]:
        first = await chain.ainvoke("one")
        streamed = [chunk async for chunk in chain.astream("two")]
        return [first, "".join(streamed)]

    assert await assistant() == ["first", "second"]
    sequence: tuple[str, str, Tree] = (
        "step",
        "RunnableSequence",
        [
            ("step", "prepare", []),
            ("llm", "GenericFakeChatModel", []),
            ("step", "StrOutputParser", []),
        ],
    )
    assert tree(agentops_events) == [("agent", "assistant", [sequence, sequence])]
    (run,) = agentops_events.runs
    assert (run.input_tokens, run.output_tokens) == (2, 1)


# -- tools, agents, guards, errors ----------------------------------------------------------


def test_an_agent_loop_records_model_tool_model_under_the_agent(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    model = chat_model(
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        answer("It is sunny in Paris.", input_tokens=20, output_tokens=6),
    )

    def loop(question: str) -> str:
        messages: list[BaseMessage] = [HumanMessage(question)]
        while True:
            reply = model.invoke(messages)
            messages.append(reply)
            if not isinstance(reply, AIMessage) or not reply.tool_calls:
                return str(reply.content)
            for call in reply.tool_calls:
                result = get_weather.invoke(call)
                assert isinstance(result, ToolMessage)
                messages.append(result)

    agent = RunnableLambda(loop, name="weather_agent")
    assert agent.invoke("Weather in Paris?") == "It is sunny in Paris."
    assert tree(agentops_events) == [
        (
            "agent",
            "weather_agent",
            [
                ("llm", "GenericFakeChatModel", []),
                ("tool", "get_weather", []),
                ("llm", "GenericFakeChatModel", []),
            ],
        )
    ]
    weather = agentops_events.span("get_weather")
    assert weather.input == {"city": "Paris"}
    assert "sunny in Paris" in str(weather.output)
    first_llm = agentops_events.children(agentops_events.span("weather_agent"))[0]
    assert first_llm.output == {
        "content": "",
        "tool_calls": [
            {"name": "get_weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}
        ],
    }
    (run,) = agentops_events.runs
    assert (run.agent, run.output_tokens) == ("weather_agent", 6)


def test_a_denied_tool_never_runs_and_the_caller_gets_the_enforcement_error(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    ran: list[str] = []

    @tool
    def delete_files(path: str) -> str:
        """Delete every file under a path."""
        ran.append(path)
        return "deleted"

    agentops_events.client.guards.add(deny_tool("delete_files"))
    agent = RunnableLambda(lambda path: delete_files.invoke({"path": path}), name="cleaner")
    with pytest.raises(agentops.PolicyViolation, match="delete_files is not allowed") as raised:
        agent.invoke("/")
    assert raised.value.rule == "no-delete_files"
    assert ran == []
    assert tree(agentops_events) == [("step", "cleaner", [("tool", "delete_files", [])])]
    assert agentops_events.span("delete_files").status == "blocked"
    assert agentops_events.span("cleaner").status == "blocked"


def test_a_denied_tool_stops_a_langgraph_tool_node_before_the_tool_runs(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    ran: list[str] = []

    @tool
    def wire_money(amount: int) -> str:
        """Send money."""
        ran.append(str(amount))
        return "sent"

    agentops_events.client.guards.add(deny_tool("wire_money"))
    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode([wire_money]))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    proposal = AIMessage("", tool_calls=[{"name": "wire_money", "args": {"amount": 10}, "id": "1"}])
    with pytest.raises(agentops.PolicyViolation, match="wire_money is not allowed"):
        graph.compile().invoke({"messages": [proposal]})
    assert ran == []
    assert tree(agentops_events) == [
        ("agent", "LangGraph", [("step", "tools", [("tool", "wire_money", [])])])
    ]
    assert {span.status for span in agentops_events.spans} == {"blocked"}


async def test_a_denied_tool_never_runs_in_async_code_either(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    ran: list[str] = []

    @tool
    async def send_email(to: str) -> str:
        """Send an email."""
        ran.append(to)
        return "sent"

    agentops_events.client.guards.add(deny_tool("send_email"))
    with pytest.raises(agentops.PolicyViolation):
        await send_email.ainvoke({"to": "ceo@example.com"})
    assert ran == []
    assert agentops_events.span("send_email").status == "blocked"


def test_a_failing_tool_is_recorded_and_its_error_propagates_unchanged(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    failure = ValueError("the API is down")

    @tool
    def fetch(url: str) -> str:
        """Fetch a page."""
        raise failure

    chain = RunnableLambda(lambda url: fetch.invoke({"url": url}), name="reader")
    with pytest.raises(ValueError, match="the API is down") as raised:
        chain.invoke("https://example.com")
    assert raised.value is failure
    for name in ("fetch", "reader"):
        span = agentops_events.span(name)
        assert span.status == "error"
        assert span.error is not None
        assert span.error.message == "the API is down"


def test_a_failing_model_is_recorded_and_its_error_propagates_unchanged(
    langchain: None, agentops_events: CapturedEvents
) -> None:
    failure = ConnectionError("the provider is down")

    class BrokenChatModel(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "broken"

        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
            raise failure

    with pytest.raises(ConnectionError) as raised:
        BrokenChatModel().invoke("hi")
    assert raised.value is failure
    span = agentops_events.span("BrokenChatModel")
    assert (span.kind, span.status) == ("llm", "error")
    assert span.error is not None
    assert span.error.type == "ConnectionError"
