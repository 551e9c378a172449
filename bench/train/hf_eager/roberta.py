"""transformers' eager RoBERTa (RobertaEmbeddings, RobertaSelfAttention, RobertaSelfOutput,
RobertaIntermediate, RobertaOutput, RobertaClassificationHead) in eval mode. `w`: the checkpoint's
tensors under RobertaForSequenceClassification's names."""
import math

import torch
import torch.nn.functional as F

from hf_eager.common import ACT2FN


def forward(cfg, w, input_ids, attention_mask, linear=None):
    """(last hidden states (B, T, H), class logits (B, num_labels)). linear(name, x) replaces the
    Linear `name` (e.g. "roberta.encoder.layer.0.attention.self.query"); default: the
    checkpoint's."""
    if linear is None:
        def linear(name, x):
            return F.linear(x, w[name + ".weight"], w[name + ".bias"])
    e = "roberta.embeddings."
    dtype = w[e + "word_embeddings.weight"].dtype
    hidden_size, n_head = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim = hidden_size // n_head
    eps = cfg["layer_norm_eps"]
    act = ACT2FN[cfg["hidden_act"]]
    padding_idx = cfg["pad_token_id"]
    bsz, seq = input_ids.shape

    # RobertaEmbeddings: create_position_ids_from_input_ids, token_type_ids all 0 (the buffer).
    m = input_ids.ne(padding_idx).int()
    position_ids = (torch.cumsum(m, dim=1).type_as(m) * m).long() + padding_idx
    token_type_ids = torch.zeros_like(input_ids)
    hidden = F.embedding(input_ids, w[e + "word_embeddings.weight"])
    hidden = hidden + F.embedding(token_type_ids, w[e + "token_type_embeddings.weight"])
    hidden = hidden + F.embedding(position_ids, w[e + "position_embeddings.weight"])
    hidden = F.layer_norm(hidden, (hidden_size,), w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"],
                          eps)
    # get_extended_attention_mask: (1 - mask) * finfo(dtype).min on (B, 1, 1, T).
    extended = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def heads(t):
        return t.view(bsz, seq, n_head, head_dim).permute(0, 2, 1, 3)

    for i in range(cfg["num_hidden_layers"]):
        p = f"roberta.encoder.layer.{i}."
        q = heads(linear(p + "attention.self.query", hidden))
        k = heads(linear(p + "attention.self.key", hidden))
        v = heads(linear(p + "attention.self.value", hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(head_dim)
        scores = scores + extended
        probs = F.softmax(scores, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(bsz, seq, hidden_size)
        # RobertaSelfOutput: LayerNorm(dense(context) + input).
        attn = F.layer_norm(linear(p + "attention.output.dense", context) + hidden, (hidden_size,),
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
        inner = act(linear(p + "intermediate.dense", attn))
        # RobertaOutput: LayerNorm(dense(inner) + attention output).
        hidden = F.layer_norm(linear(p + "output.dense", inner) + attn, (hidden_size,),
                              w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    # RobertaClassificationHead on <s> (the first token).
    x = hidden[:, 0, :]
    x = torch.tanh(linear("classifier.dense", x))
    return hidden, linear("classifier.out_proj", x)
