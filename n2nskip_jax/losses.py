"""The training loss, shared by the train step and SNIP's saliency."""
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy, computed in float32 whatever the compute dtype."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
