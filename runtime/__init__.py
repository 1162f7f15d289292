"""The model runtime: every way learnagent runs a model, below the agent and the learning code.

| module | what it holds |
|---|---|
| `model.py` | the `Model` protocol, `Completion`, `ReplyFormat` (what a complete reply is), `StreamCut` |
| `placement.py` | the one device/dtype policy |
| `identity.py` | a base model's identity (name + sha256) and the adapter stamp checked at every load |
| `loading.py` | a base with named adapters (frozen or trainable), adapter file checks, the chat template |
| `prompt.py` | fitting a conversation into the context window (shared by the local engines) |
| `engines.py` | detection and choice of the local engine |
| `engine_hf.py` | transformers in-process (+ PEFT) |
| `engine_llamacpp.py` | llama.cpp in-process (llama-cpp-python, optional extra) |
| `engine_litellm.py` | any provider or OpenAI-compatible server through litellm |
| `grammar.py` | constrained decoding of a `ReplyFormat.grammar` with llguidance |
| `gguf_lora.py`, `export.py` | a PEFT adapter as a GGUF LoRA; `adapters export` |
| `serving.py` | `learnagent serve` (llama-cpp-python's OpenAI server, or vLLM), its state file, and the registry's hook that loads a promoted adapter into a running server |

Nothing heavy is imported at package import: torch, transformers, llama_cpp and litellm load
inside the functions that need them.
"""
