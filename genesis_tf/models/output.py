"""The structured result of a forward pass, shared by every model.

A NamedTuple so that tf.function, XLA and tf.distribute can return it as a nest of
tensors. Fields a model does not have are None. Shapes: B images, K slots, H×W pixels,
Dm / Dc mask / component latent sizes.
"""
from typing import Any, NamedTuple


class SceneOutput(NamedTuple):
    recon: Any  # [B, H, W, 3]: Σ_k m_k x_k
    log_masks: Any  # [B, K, H, W, 1], logsumexp over K == 0
    components: Any  # [B, K, H, W, 3]: component means x_k
    z_mask: Any = None  # [B, K, Dm] posterior (or prior, when sampling) samples
    z_comp: Any = None  # [B, K, Dc]
    mask_logits: Any = None  # [B, K-1, H, W, 1]: decoded attention logits a_k
    mask_mean: Any = None  # [B, K, Dm] q(z^m_k | x, z^m_<k)
    mask_scale: Any = None
    mask_prior_mean: Any = None  # [B, K, Dm] p(z^m_k | z^m_<k); slot 1 is N(0, I)
    mask_prior_scale: Any = None
    comp_mean: Any = None  # [B, K, Dc] q(z^c_k | x, m_k)
    comp_scale: Any = None
    comp_prior_mean: Any = None  # [B, K, Dc] p(z^c_k | z^m_k)
    comp_prior_scale: Any = None
    # [B, K, H, W, 1]: logits of the masks decoded from the component latents (MONet's
    # m̃_k = softmax over K); not the attention masks, which are log_masks.
    decoded_mask_logits: Any = None
    # [B, K, H, W, 1]: GENESIS-V2's IC-SBP masks (inferred from pixel embeddings); its
    # log_masks are the decoded ones, which give recon and the likelihood.
    ic_sbp_log_masks: Any = None
