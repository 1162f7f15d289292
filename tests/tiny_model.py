"""A tiny random Llama with a real byte-level BPE tokenizer and chat template, built in-process.

No downloads: the tokenizer is trained on a small corpus here and the weights are random.
`make_tiny_model_dir(path)` saves a folder that `from_pretrained` (and learnagent's local
backend) loads like any Hugging Face model folder.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "class Store:\n    def __init__(self, path):\n        self.path = path\n",
    "import os\nimport sys\nprint('hello world')\n",
    "<read path=\"src/app.py\"/> <edit path=\"a.py\"> <finish>done</finish> <run>pytest -q</run>",
    "The quick brown fox jumps over the lazy dog. Use snake_case names and type hints.",
    "<<<<<<< SEARCH\n=======\n>>>>>>> REPLACE\n",
]


def make_tokenizer(vocab_size: int = 384, corpus: list[str] | None = None):
    """The byte-level BPE tokenizer, trained on CORPUS (plus `corpus`: e.g. a test repository's code,
    so that its identifiers become whole tokens and a tiny model can learn them in a few steps)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4 + list(corpus or []), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(tokenizer=None, seed: int = 0, hidden: int = 64, layers: int = 2):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def save_model_dir(model, tokenizer, path: Path) -> Path:
    """A folder `from_pretrained` (and learnagent's `local:PATH`) loads: weights + tokenizer."""
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_tiny_model_dir(path: Path, seed: int = 0) -> Path:
    return save_model_dir(*make_tiny_model(seed=seed), path)


def teach(model, tokenizer, rows, *, steps: int, batch: int, lr: float, shuffle_seed: int | None = None) -> float:
    """Plain full fine-tuning on (prompt ids, answer ids) rows, loss on the answers only.

    Tests use it to give the random tiny model a behaviour to distil (e.g. follow a rule only
    when the rule is in its context). Batches walk the rows in order, or in one seeded random
    permutation. Returns the last batch's loss.
    """
    import torch

    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (p, a) in enumerate(rows):
        ids[r, : len(p) + len(a)] = torch.tensor(p + a)
        labels[r, len(p): len(p) + len(a)] = torch.tensor(a)
        attn[r, : len(p) + len(a)] = 1
    order = (torch.arange(len(rows)) if shuffle_seed is None
             else torch.randperm(len(rows), generator=torch.Generator().manual_seed(shuffle_seed)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        sel = order[torch.arange(step * batch, step * batch + batch) % len(rows)]
        loss = model(input_ids=ids[sel], attention_mask=attn[sel], labels=labels[sel]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_adapter(base_dir, folder, seed: int = 1, std: float = 0.05, **lora):
    """A PEFT LoRA saved in `folder` for the model folder `base_dir`, its B matrices drawn from
    N(0, std) (PEFT starts them at zero) so that it changes the outputs. `lora`: LoraConfig fields."""
    import torch
    from peft import LoraConfig, get_peft_model

    from learnagent.runtime.loading import load_base
    from learnagent.runtime.placement import placement

    base, _ = load_base(base_dir, placement("cpu"))
    model = get_peft_model(base, LoraConfig(**(dict(r=4, lora_alpha=16, target_modules=LORA_MODULES) | lora)))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, std)
    model.save_pretrained(folder)
    return folder
