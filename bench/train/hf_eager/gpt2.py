"""transformers' eager GPT-2 (GPT2Attention, GPT2MLP, GPT2Block, GPT2Model, GPT2LMHeadModel) in
eval mode. `w`: the checkpoint's tensors without the "transformer." prefix."""
import torch
import torch.nn.functional as F

from hf_eager.common import ACT2FN


def conv1d(x, weight, bias):
    # transformers' Conv1D: weight stored (in, out); y = x @ weight + bias via addmm.
    size_out = x.size()[:-1] + (weight.size(-1),)
    return torch.addmm(bias, x.view(-1, x.size(-1)), weight).view(size_out)


def strip_prefix(weights):
    return {k.removeprefix("transformer."): v for k, v in weights.items()}


def hidden_states(cfg, w, input_ids, attention_mask, linear=None):
    """GPT2Model's last hidden states (after ln_f). linear(name, x) replaces the Conv1D `name`
    (e.g. "h.0.attn.c_attn"); default: the checkpoint's."""
    if linear is None:
        def linear(name, x):
            return conv1d(x, w[name + ".weight"], w[name + ".bias"])
    dtype = w["wte.weight"].dtype
    n_embd, n_head = cfg["n_embd"], cfg["n_head"]
    head_dim = n_embd // n_head
    eps = cfg["layer_norm_epsilon"]
    act = ACT2FN[cfg.get("activation_function", "gelu_new")]
    bsz, seq = input_ids.shape
    min_value = torch.finfo(dtype).min

    # GPT2Model: position_ids default to arange; the 2-D mask becomes additive (1 - m) * min.
    position_ids = torch.arange(seq, dtype=torch.long).unsqueeze(0)
    extended = (1.0 - attention_mask[:, None, None, :].to(dtype)) * min_value
    causal = torch.tril(torch.ones((seq, seq), dtype=torch.bool)).view(1, 1, seq, seq)
    hidden = F.embedding(input_ids, w["wte.weight"]) + F.embedding(position_ids, w["wpe.weight"])

    def split_heads(t):
        return t.view(bsz, seq, n_head, head_dim).permute(0, 2, 1, 3)

    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        # GPT2Block: pre-LN attention with residual, then pre-LN MLP with residual.
        residual = hidden
        x = F.layer_norm(hidden, (n_embd,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = linear(p + "attn.c_attn", x)
        q, k, v = qkv.split(n_embd, dim=2)
        q, k, v = split_heads(q), split_heads(k), split_heads(v)
        # GPT2Attention._attn (eager): scaled scores, causal mask to the dtype's min, additive
        # padding mask, softmax, weighted values.
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores / torch.full([], v.size(-1) ** 0.5, dtype=scores.dtype)
        scores = torch.where(causal, scores, torch.full([], min_value, dtype=scores.dtype))
        scores = scores + extended
        probs = F.softmax(scores, dim=-1).type(v.dtype)
        attn = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(bsz, seq, n_embd)
        attn = linear(p + "attn.c_proj", attn)
        hidden = attn + residual
        residual = hidden
        x = F.layer_norm(hidden, (n_embd,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = act(linear(p + "mlp.c_fc", x))
        x = linear(p + "mlp.c_proj", x)
        hidden = residual + x
    return F.layer_norm(hidden, (n_embd,), w["ln_f.weight"], w["ln_f.bias"], eps)


def logits(cfg, w, input_ids, attention_mask, linear=None):
    """GPT2LMHeadModel's logits: lm_head tied to wte unless the checkpoint has its own."""
    hidden = hidden_states(cfg, w, input_ids, attention_mask, linear)
    return F.linear(hidden, w.get("lm_head.weight", w["wte.weight"]))
