"""`learnagent serve`: one OpenAI-compatible server for a base model and the adapters of every
repository on it, and the hook that loads a newly promoted adapter into it without a restart.

Engines:
- `llama.cpp` (CPU; `learnagent[llama]`, which pulls llama-cpp-python's `[server]` extra): the
  base's original GGUF behind llama-cpp-python's own FastAPI app (`llama_cpp.server`), started
  in this process under uvicorn. Each adapter is one of its "models" (same GGUF + a GGUF LoRA,
  named `learnagent-<repo key>-<version>`); a request picks one by name. llama-cpp-python keeps
  ONE model in memory: a request for another adapter than the last one reloads the base with that
  LoRA inside the server (~0.2 s for the embedded model; the process, port and other adapters stay).
  Two additions of ours: `POST /learnagent/adapters` registers (and loads) an adapter at run time —
  llama-cpp-python's config is otherwise fixed at start — and requests naming a model the server
  does not hold get a 404 instead of llama-cpp-python's silent fall-back to the base.
  Requests without `repeat_penalty` get 1.0 (OpenAI's and vLLM's default, and what `do` runs
  in-process) instead of llama-cpp-python's 1.1, so a served reply equals the in-process one.
- `vllm` (GPU; not run here: no GPU): `vllm serve BASE --enable-lora` with each adapter's PEFT
  folder as `--lora-modules NAME=DIR`, and runtime loading through vLLM's documented
  `/v1/load_lora_adapter` (`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`).

A running server leaves `serve.json` in the data home (URL, engine, base folder, its pid). The
registry calls `before_pointer_change` before it moves a repository's promoted pointer
(promotion, `adapters use`, rollback, forgetting): when a server is up, the adapter is loaded
into it first, so the next request that names it never reaches a server that lacks it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from learnagent.core.errors import LearnagentError, UsageError

STATE_FILE = "serve.json"
SERVE_ENGINES = ("auto", "llama.cpp", "vllm")
SERVER_HINT = "install it with `pip install 'learnagent[llama]'` (llama-cpp-python with its [server] extra)"
LOAD_PATH = "/learnagent/adapters"


@dataclass
class ServerInfo:
    """What a running `learnagent serve` leaves in the data home for `do` and the registry hook."""

    url: str  # http://127.0.0.1:PORT/v1
    engine: str  # llama.cpp | vllm
    base_folder: str
    base_name: str  # the model name that selects the base
    pid: int
    started_at: float
    pid_start: int | None = None  # the process's start time (core.processes): a reused pid is not taken for it

    @property
    def root(self) -> str:
        return self.url[:-3] if self.url.endswith("/v1") else self.url


def state_path() -> Path:
    from learnagent.core.home import data_home

    return data_home() / STATE_FILE


def running() -> ServerInfo | None:
    """The `learnagent serve` of this data home, when its process is alive."""
    try:
        info = ServerInfo(**json.loads(state_path().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    from learnagent.core.processes import pid_alive

    return info if pid_alive(info.pid, info.pid_start) else None


def write_state(info: ServerInfo) -> None:
    from learnagent.core.home import create_private_file
    from learnagent.core.processes import process_start

    if info.pid_start is None and info.pid == os.getpid():
        info.pid_start = process_start(info.pid)

    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    create_private_file(tmp)
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n")
    os.replace(tmp, path)


def clear_state(pid: int) -> None:
    """Remove the state file if it is still this server's (a newer server may have replaced it)."""
    try:
        if json.loads(state_path().read_text()).get("pid") == pid:
            state_path().unlink()
    except (OSError, ValueError):
        pass


def base_name(base_folder: str | Path) -> str:
    """The model name that selects the bare base on a learnagent server: the model folder's name."""
    return Path(base_folder).resolve().name


def for_model(model_path: str | Path) -> ServerInfo | None:
    """The running server of this data home when it serves `model_path` as its base."""
    info = running()
    if info is None or Path(info.base_folder).resolve() != Path(model_path).resolve():
        return None
    return info


# ---- loading an adapter into a running server ---------------------------------------------------

def _post(url: str, body: dict, timeout: float = 120) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode() or "{}"
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise LearnagentError(f"{url}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LearnagentError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    try:
        return json.loads(text)
    except ValueError:
        return {"text": text}


def load_adapter(info: ServerInfo, name: str, adapter_dir: Path, version: str) -> None:
    """Load the registry adapter `adapter_dir` into the running server under `name`."""
    if info.engine == "vllm":
        try:
            _post(f"{info.root}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(Path(adapter_dir).resolve())})
        except LearnagentError as exc:  # vLLM answers 400 for a name it holds (a rollback to a served version)
            if "already been loaded" not in str(exc):
                raise
        return
    from learnagent.runtime.export import gguf_lora_for

    lora = gguf_lora_for(Path(adapter_dir), Path(info.base_folder), version=version)  # checks the base
    _post(info.root + LOAD_PATH, {"name": name, "lora_path": str(lora)})


def served_names(info: ServerInfo) -> set[str]:
    """The model names the server answers to (its OpenAI `/v1/models`: the base and the adapters)."""
    return set(listed_models(info.url))


def listed_models(url: str) -> list[str]:
    """The model ids an OpenAI-compatible server at `url` (…/v1) lists, in its order: a `learnagent
    serve` (llama.cpp or vLLM) lists the base first, then the adapters by served name."""
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
            return [m["id"] for m in json.loads(response.read()).get("data", [])]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        raise LearnagentError(f"learnagent serve at {url} does not answer: {getattr(exc, 'reason', exc)}") from None


def served_base(models: list[str], prefer: str | None = None) -> str | None:
    """The base model's name among a server's `models` (every other one is a `learnagent-…` adapter):
    `prefer` (the local model folder's name) when listed, else the first."""
    bases = [m for m in models if not m.startswith("learnagent-")]
    return prefer if prefer in bases else (bases[0] if bases else None)


def server_url(value: str, where: str) -> str:
    """The `/v1` URL of a `learnagent serve` (or any OpenAI-compatible server) a user wrote, e.g.
    `http://gpu-box:8000/v1` (`http://gpu-box:8000` gets `/v1`); a one-line usage error otherwise."""
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    try:
        bad_port = parts.port is None and ":" in parts.netloc.rsplit("]", 1)[-1]  # `host:` with no number
    except ValueError:  # a port that is no number, or out of range
        bad_port = True
    if parts.scheme not in ("http", "https") or not parts.hostname or bad_port or parts.query or parts.fragment:
        raise UsageError(f"{where} = {value!r}: not the http(s) URL of a learnagent serve, e.g. http://gpu-box:8000/v1")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/') or '/v1'}"


def ensure_adapter(info: ServerInfo, repo_key: str, version: str, adapter_dir: Path) -> str:
    """The served name of `version` of the repository keyed `repo_key`, loaded into the server
    first when it does not hold it (a repository whose adapter was promoted before this server
    started)."""
    from learnagent.runtime.export import served_name

    name = served_name(repo_key, version)
    if name not in served_names(info):
        try:
            load_adapter(info, name, Path(adapter_dir), version)
        except LearnagentError as exc:
            raise LearnagentError(f"learnagent serve at {info.url} cannot load {version}: {exc}") from None
    return name


def before_pointer_change(repo_key: str, version: str | None, adapter_dir: Path | None) -> None:
    """The registry's hook: the promoted pointer of the repository keyed `repo_key` is about to name `version` (None:
    the base). A running `learnagent serve` on the same base gets the adapter first. Never raises:
    the promotion stands either way; a failure is one line on stderr (requests for the new name
    then get a 404 from the server, not the base)."""
    if version is None or adapter_dir is None:
        return
    info = running()
    if info is None:
        return
    from learnagent.runtime.export import served_name

    name = served_name(repo_key, version)
    try:
        load_adapter(info, name, Path(adapter_dir), version)
    except Exception as exc:  # a hook: report, never break the promotion
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"warning: learnagent serve at {info.url} did not load {version}: {first}", file=sys.stderr)


# ---- the llama.cpp server -------------------------------------------------------------------------

def llamacpp_server_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "fastapi", "uvicorn", "sse_starlette",
                                                                  "starlette_context", "pydantic_settings"))


def vllm_usable() -> bool:
    """vLLM imports and torch sees a CUDA device."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def choose_serve_engine(engine: str) -> str:
    if engine not in SERVE_ENGINES:
        raise UsageError(f"--engine {engine}: use one of {', '.join(SERVE_ENGINES)}")
    if engine == "vllm":
        if not vllm_usable():
            raise UsageError("--engine vllm needs vLLM installed and a CUDA GPU (pip install vllm)")
        return engine
    if engine == "auto" and vllm_usable():
        return "vllm"
    if not llamacpp_server_installed():
        raise UsageError(f"learnagent serve needs llama-cpp-python's server on a CPU: {SERVER_HINT}")
    return "llama.cpp"


class _Requests:
    """ASGI middleware for the OpenAI routes: a request naming a model the server does not hold
    gets a 404 (llama-cpp-python would serve the base instead), and `repeat_penalty` defaults to 1.0."""

    ROUTES = ("/v1/chat/completions", "/v1/completions")

    def __init__(self, app, names: set[str]):
        self.app, self.names = app, names

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.ROUTES:
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            model = data.get("model")
            if model is not None and model not in self.names:
                error = {"error": {"message": f"The model `{model}` does not exist on this server "
                                              f"(it serves: {', '.join(sorted(self.names))})",
                                   "type": "invalid_request_error", "code": "model_not_found"}}
                payload = json.dumps(error).encode()
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
                return
            data.setdefault("repeat_penalty", 1.0)
            body = json.dumps(data).encode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        scope = dict(scope, headers=headers + [(b"content-length", str(len(body)).encode())])
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def llamacpp_app(base_folder: Path, gguf: Path, adapters: dict[str, Path], *, n_threads: int | None = None,
                 n_ctx: int = 8192):
    """llama-cpp-python's OpenAI app for `gguf` (the base, under `base_name(base_folder)`) and
    `adapters` (served name -> GGUF LoRA), with our run-time loading route and request checks."""
    import contextlib

    from fastapi import APIRouter, HTTPException
    from llama_cpp.server.app import create_app, get_llama_proxy
    from llama_cpp.server.settings import ModelSettings, ServerSettings
    from pydantic import BaseModel
    from starlette.concurrency import run_in_threadpool

    threads = int(n_threads or os.cpu_count() or 1)

    def settings(alias: str, lora: Path | None) -> ModelSettings:
        # the model folder's own tokenizer (as the in-process engine uses), the GGUF's chat template
        return ModelSettings(model=str(gguf), model_alias=alias, lora_path=str(lora) if lora else None,
                             n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=0, verbose=False,
                             hf_pretrained_model_name_or_path=str(base_folder))

    base = base_name(base_folder)
    names = {base, *adapters}
    models = [settings(base, None)] + [settings(name, lora) for name, lora in sorted(adapters.items())]
    app = create_app(server_settings=ServerSettings(), model_settings=models)

    class Adapter(BaseModel):
        name: str
        lora_path: str

    router = APIRouter()

    async def load(adapter):
        lora = Path(adapter.lora_path)
        if not lora.is_file() or lora.read_bytes()[:4] != b"GGUF":
            raise HTTPException(status_code=400, detail=f"{lora} is not a GGUF file")
        async with contextlib.asynccontextmanager(get_llama_proxy)() as proxy:
            previous = proxy._model_settings_dict.get(adapter.name)  # noqa: SLF001 (a reload of a known name)
            proxy[adapter.name] = settings(adapter.name, lora)
            try:  # load it now, so a bad LoRA fails here and the first request finds it loaded
                await run_in_threadpool(proxy, adapter.name)
            except Exception as exc:
                if previous is None:
                    del proxy._model_settings_dict[adapter.name]  # noqa: SLF001
                else:
                    proxy[adapter.name] = previous
                raise HTTPException(status_code=422, detail=f"llama.cpp cannot load {lora}: {exc}") from None
        names.add(adapter.name)
        return {"loaded": adapter.name, "lora_path": str(lora)}

    load.__annotations__ = {"adapter": Adapter}  # a local class: FastAPI cannot resolve its name (PEP 563)
    router.post(LOAD_PATH)(load)

    @router.get(LOAD_PATH)
    async def listing():
        return {"base": base, "adapters": sorted(names - {base})}

    app.include_router(router)
    app.add_middleware(_Requests, names=names)
    return app


def free_port(host: str, port: int = 0) -> int:
    """`port` if it can be bound on `host` (any free one for 0); a one-line error otherwise."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                             "(another server? pick another --port, or --port 0 for any free one)") from None
        return s.getsockname()[1]


def serve_llamacpp(base_folder: Path, gguf: Path, adapters: dict[str, Path], *, host: str, port: int,
                   n_threads: int | None = None, on_ready=None) -> None:
    """Run the llama.cpp server in this process until interrupted; `serve.json` names it meanwhile."""
    import threading

    import uvicorn

    port = free_port(host, port)
    app = llamacpp_app(base_folder, gguf, adapters, n_threads=n_threads)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    info = ServerInfo(url=f"http://{host}:{port}/v1", engine="llama.cpp", base_folder=str(Path(base_folder).resolve()),
                      base_name=base_name(base_folder), pid=os.getpid(), started_at=time.time())

    def announce():
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            write_state(info)
            if on_ready:
                on_ready(info)

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        clear_state(info.pid)


def vllm_command(base_folder: Path, adapters: dict[str, Path], *, host: str, port: int, max_rank: int) -> list[str]:
    """`vllm serve` for the base (HF folder) with `adapters` (served name -> PEFT folder), run-time
    loading allowed (vLLM documents it as risky in production: keep the server on a private network)."""
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(base_folder),
               "--served-model-name", base_name(base_folder), "--enable-lora", "--max-lora-rank", str(max_rank),
               "--max-loras", str(max(1, min(len(adapters) or 1, 8))), "--host", host, "--port", str(port)]
    if adapters:
        command += ["--lora-modules", *(f"{name}={Path(folder).resolve()}" for name, folder in sorted(adapters.items()))]
    return command


def serve_vllm(base_folder: Path, adapters: dict[str, Path], *, host: str, port: int, max_rank: int,
               on_ready=None) -> None:
    """Run vLLM's OpenAI server as a child process until it ends (written against vLLM's documented
    CLI and endpoints; not run here: no GPU)."""
    import subprocess

    port = free_port(host, port)
    env = dict(os.environ, VLLM_ALLOW_RUNTIME_LORA_UPDATING="True")
    child = subprocess.Popen(vllm_command(base_folder, adapters, host=host, port=port, max_rank=max_rank), env=env)
    info = ServerInfo(url=f"http://{host}:{port}/v1", engine="vllm", base_folder=str(Path(base_folder).resolve()),
                      base_name=base_name(base_folder), pid=os.getpid(), started_at=time.time())
    try:
        deadline = time.monotonic() + 1800
        while child.poll() is None and time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{info.root}/health", timeout=2).close()
                break
            except (urllib.error.URLError, OSError):
                time.sleep(2)
        if child.poll() is None:
            write_state(info)
            if on_ready:
                on_ready(info)
        child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait(timeout=60)
    finally:
        clear_state(info.pid)
