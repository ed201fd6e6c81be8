"""A poll path that fails or hangs never looks healthy, and one error never stops it (issue 23, finding 1).

Any exception in a worker, a job's reading, a cycle or a publish is caught, counted in
``ccs_poll_errors_total{stage}`` and logged once, and the next cycle runs. A loop that stops completing
cycles (a hung call) is caught by the watchdog: /readyz answers 503, ``ccs_up`` 0, ``ccs_poll_stalled`` 1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ccs_exporter.client import CcsClient
from ccs_exporter.exporter import Exporter
from ccs_exporter.polling.cycle import Poller
from ccs_exporter.polling.health import PollHealth, stall_after
from ccs_exporter.polling.loop import PollLoop
from ccs_exporter.polling.snapshot import PollSnapshot
from ccs_exporter.polling.work import WorkItem
from ccs_exporter.settings.config import load_settings
from ccs_exporter.simulator import Simulator


@pytest.fixture
def sim(started: Callable[..., Simulator]) -> Simulator:
    started_simulator: Simulator = started(run_interval=None)
    return started_simulator


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class TestStallLimit:
    def test_three_intervals_or_the_floor(self) -> None:
        """The limit is the larger of three poll intervals and 60 s."""
        assert stall_after(5) == 60 and stall_after(60) == 180

    def test_stalled_only_past_the_limit(self) -> None:
        """No completed cycle for longer than the limit is a stall; a completed cycle ends it."""
        now = [100.0]
        health = PollHealth(10.0, clock=lambda: now[0])
        now[0] += 9
        assert health.stalled_for() is None
        now[0] += 2
        assert health.stalled_for() == pytest.approx(11)
        health.cycle_completed()
        assert health.stalled_for() is None


@pytest.mark.integration
class TestErrorsAreCaughtAndCounted:
    """Errors nobody foresaw cost one job or one cycle, are counted by stage, and the loop goes on."""

    def _client(self, sim: Simulator) -> CcsClient:
        return CcsClient(sim.url, sim.username, SecretStr(sim.password), timeout=5, backoff_seconds=0)

    def test_a_job_whose_reading_raises_fails_alone_cycle_after_cycle(self, sim: Simulator) -> None:
        """A RuntimeError in one job's reading: that job fails each cycle, the others are read, the
        workers survive (2 workers, 6 cycles), and ccs_poll_errors_total{stage="job"} counts each."""
        client = self._client(sim)
        poller = Poller(client, sim.job_ids[:4], concurrency=2)
        broken = sim.job_ids[0]
        original = poller._reader.do

        def do(item: WorkItem, previous: Any) -> Any:
            if item.job_id == broken:
                raise RuntimeError("a bug")
            return original(item, previous)

        poller._reader.do = do  # type: ignore[method-assign]
        published: list[PollSnapshot] = []
        loop = PollLoop(poller, 0.05, published.append)
        loop.start()
        try:
            deadline = time.monotonic() + 30
            while len(published) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            loop.stop()
            client.close()
        assert len(published) >= 6
        last = published[-1]
        states = {job.job_id: job for job in last.jobs}
        assert not states[broken].poll_success
        assert all(states[job_id].poll_success for job_id in sim.job_ids[1:4])
        assert last.up
        assert dict(last.errors)["job"] >= 6

    def test_a_crashing_cycle_and_publish_are_counted_and_the_loop_goes_on(self, sim: Simulator) -> None:
        """The first cycle raises and the first publish raises; later cycles are published with both
        counted (stage cycle and publish)."""
        client = self._client(sim)
        poller = Poller(client, sim.job_ids[:2], concurrency=2)
        original = poller.poll_cycle
        calls = [0]

        def poll_cycle(stop: threading.Event | None = None) -> PollSnapshot:
            calls[0] += 1
            if calls[0] == 1:
                raise OverflowError("int too large to convert to float")
            return original(stop)

        poller.poll_cycle = poll_cycle  # type: ignore[method-assign]
        published: list[PollSnapshot] = []

        def publish(snapshot: PollSnapshot) -> None:
            if calls[0] == 2:
                raise ValueError("render bug")
            published.append(snapshot)

        loop = PollLoop(poller, 0.05, publish)
        loop.start()
        try:
            assert loop.wait_ready(30)
        finally:
            loop.stop()
            client.close()
        errors = dict(published[0].errors)
        assert errors["cycle"] == 1 and errors["publish"] == 1
        assert set(errors) == {"login", "discovery", "job", "worker", "cycle", "publish", "reload"}


@pytest.mark.integration
class TestWatchdog:
    """The reported symptom: cycles stop, yet ccs_up stayed 1 and /readyz 200. No more."""

    def test_hung_loop_turns_readyz_and_ccs_up_and_recovers(self, sim: Simulator) -> None:
        """CCS hangs every request (a one-hour timeout keeps the loop stuck): past the limit /readyz is
        503, ccs_up 0 and ccs_poll_stalled 1; once CCS answers again all three recover."""
        settings = load_settings(
            None,
            {
                "url": sim.url,
                "username": sim.username,
                "password": sim.password,
                "job_ids": sim.job_ids[:2],
                "listen_address": "127.0.0.1:0",
                "poll_interval_seconds": 0.2,
                "request_timeout_seconds": 3600,
            },
        )
        exporter = Exporter(settings)
        exporter.poller.health.stall_after_seconds = 1.5  # the floor is 60 s; the test cannot wait that
        with exporter:
            assert exporter.wait_ready(20)
            base = exporter.url
            assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
            sim.faults.update({"hang": True})
            sim.revoke_tokens()  # the next cycle must log in, and that request hangs

            def scrape() -> tuple[int, dict[Any, float]]:
                ready = requests.get(f"{base}/readyz", timeout=5).status_code
                return ready, _samples(requests.get(f"{base}/metrics", timeout=5).text)

            deadline = time.monotonic() + 20
            ready, samples = scrape()
            while ready == 200 and time.monotonic() < deadline:
                time.sleep(0.2)
                ready, samples = scrape()
            assert ready == 503
            assert samples[("ccs_up", ())] == 0
            assert samples[("ccs_poll_stalled", ())] == 1
            sim.faults.update({"hang": False})
            deadline = time.monotonic() + 20
            while ready != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
                ready, samples = scrape()
            assert ready == 200
            assert samples[("ccs_up", ())] == 1
            assert samples[("ccs_poll_stalled", ())] == 0
