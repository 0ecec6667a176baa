"""A float32 PyTorch Llama with transformers' module names, standing in for `transformers.LlamaForCausalLM`.

The official Wanda and SparseGPT code only needs: `model.model.layers[i]` decoder layers called as
`layer(x, attention_mask=..., position_ids=...)[0]` whose projections are plain `nn.Linear` modules at
`self_attn.{q,k,v,o}_proj` and `mlp.{gate,up,down}_proj`; `model.model.embed_tokens` / `model.model.norm`;
`model.config.use_cache` / `hidden_size`; and a forward from input ids that reaches layer 0 (where their
Catcher stops it). The arithmetic follows transformers' eager path (LlamaAttention without SDPA, which
PyTorch 1.13 lacks; the path transformers 4.28, the version the Wanda repository pins, always took):
RMSNorm in float32, RoPE on the rotate-half layout from position ids (arange when a caller gives none, as
SparseGPT's llama.py does), scores + additive causal mask of the dtype's minimum, softmax in float32,
SiLU-gated MLP. Loads one `model.safetensors` (F32/F16/BF16) written with HF tensor names.
"""
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import st_io


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.variance_epsilon = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, base):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer('inv_freq', inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, x, position_ids):
        freqs = (self.inv_freq[None, :, None].expand(position_ids.shape[0], -1, 1) @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.num_kv = c.num_key_value_heads
        self.head_dim = c.hidden_size // self.num_heads
        self.hidden_size = c.hidden_size
        self.q_proj = nn.Linear(c.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.num_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.num_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, c.hidden_size, bias=False)
        self.rotary_emb = LlamaRotaryEmbedding(self.head_dim, c.rope_theta)

    def forward(self, x, attention_mask=None, position_ids=None):
        bsz, q_len, _ = x.size()
        q = self.q_proj(x).view(bsz, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(bsz, q_len, self.num_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(bsz, q_len, self.num_kv, self.head_dim).transpose(1, 2)
        if position_ids is None:
            position_ids = torch.arange(q_len, device=x.device).unsqueeze(0)
        cos, sin = self.rotary_emb(v, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.num_heads // self.num_kv
        if groups > 1:  # transformers' repeat_kv
            k = k[:, :, None].expand(bsz, self.num_kv, groups, q_len, self.head_dim).reshape(bsz, self.num_heads, q_len, self.head_dim)
            v = v[:, :, None].expand(bsz, self.num_kv, groups, q_len, self.head_dim).reshape(bsz, self.num_heads, q_len, self.head_dim)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        if attention_mask is not None:
            w = w + attention_mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(bsz, q_len, self.hidden_size)
        return self.o_proj(out), None, None


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, hidden_states, attention_mask=None, position_ids=None, **kwargs):
        h = hidden_states + self.self_attn(self.input_layernorm(hidden_states), attention_mask=attention_mask, position_ids=position_ids)[0]
        return (h + self.mlp(self.post_attention_layernorm(h)),)


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, input_ids):
        h = self.embed_tokens(input_ids)
        n = input_ids.shape[1]
        position_ids = torch.arange(n, device=h.device).unsqueeze(0)
        mask = torch.full((n, n), torch.finfo(h.dtype).min, dtype=h.dtype, device=h.device).triu(1)[None, None]
        for layer in self.layers:
            h = layer(h, attention_mask=mask, position_ids=position_ids)[0]
        return self.norm(h)


class LlamaForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def forward(self, input_ids):
        return SimpleNamespace(logits=self.lm_head(self.model(input_ids)))

    @classmethod
    def from_pretrained(cls, folder):
        with open(os.path.join(folder, 'config.json')) as f:
            cfg = json.load(f)
        c = SimpleNamespace(
            hidden_size=cfg['hidden_size'], intermediate_size=cfg['intermediate_size'],
            num_hidden_layers=cfg['num_hidden_layers'], num_attention_heads=cfg['num_attention_heads'],
            num_key_value_heads=cfg.get('num_key_value_heads', cfg['num_attention_heads']),
            vocab_size=cfg['vocab_size'], rms_norm_eps=cfg.get('rms_norm_eps', 1e-6),
            rope_theta=cfg.get('rope_theta', 10000.0), max_position_embeddings=cfg.get('max_position_embeddings', 2048),
            use_cache=False,
        )
        if cfg.get('rope_scaling') or cfg.get('hidden_act', 'silu') != 'silu' or cfg.get('attention_bias') or cfg.get('mlp_bias'):
            raise ValueError(f'{folder}/config.json: this stand-in covers plain Llama only (no rope_scaling, SiLU, no biases)')
        model = cls(c)
        tensors = st_io.read(os.path.join(folder, 'model.safetensors'))
        if cfg.get('tie_word_embeddings') and 'lm_head.weight' not in tensors:
            tensors['lm_head.weight'] = tensors['model.embed_tokens.weight']
        model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()}, strict=True)
        model.eval()
        return model


class Conv1D(nn.Module):
    """Only for the official code's isinstance checks (GPT-2's transposed linear; absent from a Llama)."""
