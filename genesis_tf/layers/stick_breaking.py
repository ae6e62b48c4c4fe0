"""Stick-breaking in log space: K−1 attention logits -> K log masks that sum to one.

log s_0 = 0; for k < K: log m_k = log s_{k-1} + log σ(a_k), log s_k = log s_{k-1} + log σ(−a_k);
the last mask takes the remaining scope, log m_K = log s_{K-1}.
"""
from keras import ops

from genesis_tf.layers import tracking


class StickBreaking(tracking.Layer):
    """Attention logits [B, K−1, H, W, 1] -> log masks [B, K, H, W, 1].

    Also returns the log scopes [B, K, H, W, 1] (log s_0 .. log s_{K-1}), which MONet-style
    models read. K−1 = 0 gives one mask of ones.
    """

    def call(self, logits):
        log_stay = ops.log_sigmoid(logits)  # log σ(a_k): share of the scope taken by slot k
        log_pass = ops.log_sigmoid(-logits)  # log σ(−a_k): share passed on
        zeros = ops.zeros_like(logits[:, :1])
        # log s_k = Σ_{j<=k} log σ(−a_j); exclusive cumsum gives log s_{k-1} for slot k.
        log_scopes = ops.concatenate([zeros, ops.cumsum(log_pass, axis=1)], axis=1)
        log_masks = ops.concatenate([log_scopes[:, :-1] + log_stay, log_scopes[:, -1:]], axis=1)
        return log_masks, log_scopes
