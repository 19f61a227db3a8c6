"""The optax training loop: deterministic, batched, per-epoch history (the paper's Figs. 2, 5)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfjax.batches import padded_batches
from dfjax.config import TrainSpec
from dfjax.data.base import Split
from dfjax.losses import cross_entropy, predicted_class
from dfjax.numerics import NonFiniteError, all_finite, first_nonfinite_index
from dfjax.training.base import Recipe
from dfjax.training.recipes import build_recipe
from dfjax.xla import jit as dfjax_jit


def create_variables(model: nn.Module, image_shape: tuple[int, ...], key: jax.Array) -> dict:
    """Initial variables for inputs of shape [h, w, c], initialised as one compiled program
    (the same values as op by op, in a fraction of the time: xception at 64x64 10.2 -> 5.2 s,
    meso4 4.0 -> 0.7 s on the 2-core Xeon, most of it compiling)."""
    x = jnp.zeros((1, *image_shape), jnp.float32)
    return dict(dfjax_jit(lambda key: model.init(key, x, train=False))(key))


def make_optimizer(spec: TrainSpec, recipe: Recipe) -> optax.GradientTransformation:
    """Adam at spec.learning_rate, after the recipe's gradient transform if it has one."""
    adam = optax.adam(spec.learning_rate)
    if recipe.gradient_transform is None:
        return adam
    return optax.chain(recipe.gradient_transform, adam)


def _per_example_value_and_grad(loss: Callable, variables, params, x, y, key, progress):
    """((mean loss, (logits [b, k], state)), gradients with a leading [b] axis): `loss`
    on each example alone, keyed by split(key, b)."""
    def single(p, xi, yi, ki):
        value, (logits, _) = loss(variables, p, xi[None], yi[None], ki, progress)
        return value, logits[0]

    keys = jax.random.split(key, x.shape[0])
    (values, logits), grads = jax.vmap(jax.value_and_grad(single, has_aux=True),
                                       in_axes=(None, 0, 0, 0))(params, x, y, keys)
    state = {k: v for k, v in variables.items() if k != "params"}
    return (values.mean(), (logits, state)), grads


def make_train_step(recipe: Recipe, optimizer: optax.GradientTransformation) -> Callable:
    """The compiled step (variables, opt_state, images_u8 [b, h, w, c], y [b], key,
    progress) -> (variables, opt_state, loss, number correct). `optimizer` must start
    with `recipe.gradient_transform` (see `make_optimizer`). The loss is NaN where any
    gradient entry is NaN or Inf, so a non-finite loss flags both (`train_detector`
    checks it)."""

    @dfjax_jit
    def train_step(variables, opt_state, images_u8, y, key, progress=0.0):
        """progress: float in [0, 1], the fraction of training done before this step."""
        x = images_u8.astype(jnp.float32) / 255.0
        if recipe.per_example:  # e.g. DP-SGD: the optimizer aggregates them
            (loss, (logits, state)), grads = _per_example_value_and_grad(
                recipe.loss, variables, variables["params"], x, y, key, progress)
        else:
            (loss, (logits, state)), grads = jax.value_and_grad(
                lambda p: recipe.loss(variables, p, x, y, key, progress),
                has_aux=True)(variables["params"])
        loss = jnp.where(all_finite(grads), loss, jnp.nan)  # one reduction per leaf
        updates, opt_state = optimizer.update(grads, opt_state, variables["params"])
        params = optax.apply_updates(variables["params"], updates)
        correct = jnp.sum(predicted_class(logits) == y)
        return {**state, "params": params}, opt_state, loss, correct

    return train_step


def make_eval_step(model: nn.Module) -> Callable:
    @dfjax_jit
    def eval_step(variables, images_u8, y, mask):
        logits = model.apply(variables, images_u8.astype(jnp.float32) / 255.0, train=False)
        loss = jnp.sum(cross_entropy(logits, y) * mask)
        correct = jnp.sum((predicted_class(logits) == y) * mask)
        return loss, correct

    return eval_step


def evaluate(eval_step, variables, split: Split, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a split."""
    total_loss, total_correct = 0.0, 0.0
    for idx, mask in padded_batches(len(split), batch_size):
        loss, correct = eval_step(variables, split.images[idx], split.labels[idx], mask)
        total_loss += float(loss)
        total_correct += float(correct)
    n = max(len(split), 1)
    return total_loss / n, total_correct / n


# The training losses are checked for NaN/Inf in chunks of this many steps, each chunk
# once the next one is complete (its steps have long finished: the check never waits for
# the device) and at the end of the epoch; a diverged training stops within 2 chunks.
NONFINITE_CHECK_STEPS = 32


def check_step_losses(step_losses: list, *, epoch: int, first_step: int,
                      recipe_name: str) -> None:
    """NonFiniteError naming the epoch (1-based) and step (0-based within the epoch) of the
    first NaN/Inf among `step_losses` (scalars of steps first_step, first_step + 1, ...;
    a step's loss is NaN where its gradient was non-finite: `make_train_step`)."""
    if not step_losses:
        return
    values = np.asarray(jnp.stack(step_losses))
    bad = first_nonfinite_index(values)
    if bad is None:
        return
    earlier = values[:bad]
    last_finite = f"; the step before's loss was {earlier[-1]:.6g}" if len(earlier) else ""
    raise NonFiniteError(
        f"training {recipe_name} diverged: the training loss or its gradient is NaN/Inf "
        f"at epoch {epoch}, step {first_step + bad}{last_finite}",
        what="training loss or gradient", epoch=epoch, step=first_step + bad)


def train_detector(
    model: nn.Module, train: Split, validation: Split, spec: TrainSpec, *, key: jax.Array,
    on_epoch: Callable[[dict], None] | None = None, initial_variables: dict | None = None,
) -> tuple[dict, list[dict[str, Any]]]:
    """Train with optax Adam (after the recipe's gradient transform); returns
    (variables, history). The recipe `spec.recipe` is built once, here.

    history has one dict per epoch: train_loss, train_accuracy, val_loss,
    val_accuracy, seconds, and a private recipe's `Recipe.privacy` record (dp_sgd:
    epsilon, delta, accountant). Option `init_from` = a weights file (see
    dfjax.models.pretrained) fine-tunes from it, as does `initial_variables` (the
    runner's warm start from a cached detector). Shuffling uses fold_in(key, epoch):
    same key, same weights.

    Raises NonFiniteError (dfjax.numerics) naming the epoch and step where the training
    loss or a gradient first became NaN/Inf (checked in chunks of NONFINITE_CHECK_STEPS),
    or the epoch after which the validation loss is not finite.
    """
    if len(train) < spec.batch_size:
        raise ValueError(f"{len(train)} training examples < batch size {spec.batch_size}")
    recipe = build_recipe(model, spec)  # checks the options before any work
    if initial_variables is not None:  # fine-tuning a detector of the same architecture
        variables = initial_variables
    else:
        variables = create_variables(model, train.images.shape[1:], jax.random.fold_in(key, 0))
    if initial_variables is None and spec.option("init_from"):
        # fine-tuning: pretrained body, fresh num_logits head
        from dfjax.models.pretrained import load_pretrained

        variables = load_pretrained(spec.option("init_from"), variables)
    optimizer = make_optimizer(spec, recipe)
    opt_state = optimizer.init(variables["params"])
    train_step = make_train_step(recipe, optimizer)
    eval_step = make_eval_step(model)
    history = []
    steps_per_epoch = len(train) // spec.batch_size
    for epoch in range(spec.epochs):
        start = time.perf_counter()
        epoch_key = jax.random.fold_in(key, epoch + 1)
        order = np.asarray(jax.random.permutation(epoch_key, len(train)))
        loss_sum, correct_sum = jnp.zeros(()), jnp.zeros(())  # on device: no per-step sync
        chunk, previous_chunk = [], []  # step losses, checked for NaN/Inf a chunk late
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * spec.batch_size:(step + 1) * spec.batch_size])
            progress = (epoch * steps_per_epoch + step) / (spec.epochs * steps_per_epoch)
            variables, opt_state, loss, correct = train_step(
                variables, opt_state, train.images[idx], train.labels[idx],
                jax.random.fold_in(epoch_key, step), jnp.float32(progress))
            loss_sum += loss
            correct_sum += correct
            chunk.append(loss)
            if len(chunk) == NONFINITE_CHECK_STEPS or step + 1 == steps_per_epoch:
                check_step_losses(previous_chunk, epoch=epoch + 1,
                                  first_step=step + 1 - len(chunk) - len(previous_chunk),
                                  recipe_name=spec.recipe)
                chunk, previous_chunk = [], chunk
        check_step_losses(previous_chunk, epoch=epoch + 1,
                          first_step=steps_per_epoch - len(previous_chunk),
                          recipe_name=spec.recipe)
        val_loss, val_accuracy = evaluate(eval_step, variables, validation, 256)
        if not np.isfinite(val_loss):
            raise NonFiniteError(
                f"training {spec.recipe}: validation loss is {val_loss} after epoch {epoch + 1} "
                "(the detector's logits are NaN or Inf on validation examples)",
                what="validation loss", epoch=epoch + 1)
        record = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum) / steps_per_epoch,
            "train_accuracy": float(correct_sum) / (steps_per_epoch * spec.batch_size),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "seconds": time.perf_counter() - start,
        }
        if recipe.privacy is not None:  # DP-SGD: (epsilon, delta)-DP spent so far
            record.update(recipe.privacy((epoch + 1) * steps_per_epoch, len(train)))
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return variables, history
