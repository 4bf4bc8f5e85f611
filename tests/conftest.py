"""Shared test settings, a local HTTP server and the tests' small exact problem (``toy``)."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest
import torch

from deqir_edu.diffusion import GaussianMixturePrior, draw_noises
from deqir_edu.operators import Operator, make_operator

os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors on a 2-core CI machine: one thread avoids OpenMP oversubscription stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Handler(BaseHTTPRequestHandler):
    """GET serves ``server.files[path]``; ``server.short[path] = n`` announces the full length but sends n bytes."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv = self.server
        srv.hits[self.path] += 1  # type: ignore[attr-defined]
        body = srv.files.get(self.path)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404, "no such file")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: srv.short.get(self.path, len(body))])  # type: ignore[attr-defined]

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadingHTTPServer]:
    """A local HTTP server on 127.0.0.1: ``server.files[path] = bytes``, ``server.hits``, ``server.url(path)``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)  # port 0: an ephemeral free port
    srv.files, srv.short, srv.hits = {}, {}, Counter()  # type: ignore[attr-defined]
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


class Toy(NamedTuple):
    """A small restoration problem with an exact prior, in float64 (code name -> paper symbol).

    prior    epsilon_theta   Gaussian-mixture noise predictor, exact: E[eps | x_t]
    x        x_0             (B, C, H, W) clean images drawn from the prior
    op       A               the degradation of ``task``
    y        y = A x_0       the measurements
    x_T      x_T             (B, C, H, W) start of the chain
    noises   eps_T..eps_1    (T, B, C, H, W) fresh noise of each step, in ``draw_noises`` order
    """

    prior: GaussianMixturePrior
    x: torch.Tensor
    op: Operator
    y: torch.Tensor
    x_T: torch.Tensor
    noises: torch.Tensor


def make_toy(
    task: str = "sr4",
    batch: int = 2,
    steps: int = 20,
    *,
    shape: tuple[int, int, int] = (3, 8, 8),
    components: int = 4,
    std: float = 0.1,
    scale: float = 0.8,
    weights: bool = False,
    seed: int = 0,
    sample_seed: int | None = None,
    noise_seed: int = 1,
) -> Toy:
    """The problem the tests share: ``components`` means ``(2 u - 1) * scale`` (u uniform, generator seeded
    ``seed``; then weights ``0.5 + u`` if ``weights``, else equal ones), a common ``std``; ``batch`` images
    drawn from the prior with the same generator (or with one seeded ``sample_seed``); ``x_T`` and the
    noises of a ``steps``-step chain from a generator seeded ``noise_seed``."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(components, *shape, generator=g, dtype=torch.float64) * 2 - 1) * scale
    w = torch.rand(components, generator=g, dtype=torch.float64) + 0.5 if weights else None
    prior = GaussianMixturePrior(means, std, weights=w)
    x = prior.sample(batch, g if sample_seed is None else torch.Generator().manual_seed(sample_seed))
    op = make_operator(task, shape)
    x_T, noises = draw_noises(tuple(x.shape), steps, torch.Generator().manual_seed(noise_seed))
    return Toy(prior, x, op, op.A(x), x_T, noises)


@pytest.fixture(scope="session")
def toy() -> Callable[..., Toy]:
    """``make_toy``, the factory of the shared problem: ``toy("inpaint-box", batch=3, steps=8).y``.

    Session scope (it keeps no state), so module-scoped fixtures can use it; a module-level function, so it
    can be passed to spawned worker processes (pickled by name)."""
    return make_toy
