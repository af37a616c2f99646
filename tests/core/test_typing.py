"""Typing that helps: mypy --strict on small user scripts catches misspelled options, a string
where messages go, and knows the type of ``parsed``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("CI"):  # the test group installs mypy: in CI this test must run
    import mypy.api as mypy_api
else:
    mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[2]

CORRECT = '''\
from pydantic import BaseModel

from llm_async import AsyncLLMClient, ChatResponse


class City(BaseModel):
    name: str


async def main() -> None:
    async with AsyncLLMClient("openai", api_key="sk-x", max_retries=2, verify=False) as client:
        reply = await client.chat(model="gpt-4o-mini", temperature=0.2, max_tokens=50,
                                  messages=[{"role": "user", "content": "Hi"}])
        text: str = reply.text
        city = await client.chat(model="gpt-4o-mini", response_format=City,
                                 messages=[{"role": "user", "content": "Capital of France?"}])
        reveal_type(city.parsed)
        plain: ChatResponse = reply
        async with client.stream(model="gpt-4o-mini", user_id="u1",
                                 messages=[{"role": "user", "content": "Hi"}]) as stream:
            async for chunk in stream:
                print(chunk.delta, text, plain.model)
'''

MISTAKES = '''\
from llm_async import AsyncLLMClient


async def main() -> None:
    client = AsyncLLMClient("openai", api_key="sk-x", max_retires=2)
    await client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}],
                      temprature=0.2)
    await client.chat(model="gpt-4o-mini", messages="hi")
'''


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    folder = tmp_path_factory.mktemp("typing")
    (folder / "correct.py").write_text(CORRECT)
    (folder / "mistakes.py").write_text(MISTAKES)
    old = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(ROOT)  # this checkout's llm_async, not an installed one
    try:
        out, err, _ = mypy_api.run([
            "--strict", "--follow-imports=silent", "--no-error-summary",
            "--cache-dir", str(folder / ".mypy_cache"),
            str(folder / "correct.py"), str(folder / "mistakes.py")])
    finally:
        if old is None:
            os.environ.pop("MYPYPATH", None)
        else:
            os.environ["MYPYPATH"] = old
    assert not err, err
    lines: dict[str, list[str]] = {"correct.py": [], "mistakes.py": []}
    for line in out.splitlines():
        for name, found in lines.items():
            if Path(line.split(":", 1)[0]).name == name:
                found.append(line)
    return lines


def test_a_correct_script_passes_strict_and_parsed_has_the_model_type(
        mypy_report: dict[str, list[str]]) -> None:
    report = mypy_report["correct.py"]
    errors = [line for line in report if ": error:" in line]
    assert errors == []
    assert any('Revealed type is "correct.City | None"' in line for line in report), report


def test_each_mistake_is_an_error_on_its_own_line(mypy_report: dict[str, list[str]]) -> None:
    errors = [line for line in mypy_report["mistakes.py"] if ": error:" in line]
    lines = {int(line.split(":")[1]) for line in errors}
    assert lines == {5, 6, 8}, errors
    assert any("max_retires" in line for line in errors)
    assert any("temprature" in line or "chat" in line for line in errors if ":6:" in line)
