"""A TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): each vector is
encoded by its k largest encoder pre-activations (through a ReLU) and decoded by unit-norm decoder rows, with
the auxiliary loss (AuxK) that revives dead features by having them reconstruct what the live ones miss.

    codes = ReLU(TopK_k((x / scale - b_pre) W_enc + b_enc)),   x_hat = (codes W_dec + b_pre) * scale

`scale` sets the data's per-channel spread to about 1, so one learning rate suits every layer."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

AUX_COEFFICIENT = 1 / 32  # Gao et al.'s alpha
DECAY_FROM = 0.8  # the learning rate decays linearly to zero over the last 20% of the steps


class TopKSAE:
    method = "sae"

    def __init__(self, encoder: torch.Tensor, encoder_bias: torch.Tensor, decoder: torch.Tensor,
                 pre_bias: torch.Tensor, scale: float, k: int):
        self.encoder, self.encoder_bias, self.decoder, self.pre_bias = encoder, encoder_bias, decoder, pre_bias
        self.scale, self.k = float(scale), int(k)
        self.channels, self.size = decoder.shape[1], decoder.shape[0]

    def preactivations(self, vectors: torch.Tensor) -> torch.Tensor:
        """(x / scale - b_pre) W_enc + b_enc as one fused product and sum: x (W_enc / scale) + (b_enc - b_pre W_enc)."""
        return torch.addmm(self.encoder_bias - self.pre_bias @ self.encoder, vectors, self.encoder / self.scale)

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        return top_k_relu(self.preactivations(vectors), self.k)

    def encode_sparse(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode`'s codes as each row's k chosen features: (N, k) values (0 where the ReLU cut one) and (N, k)
        feature indices, in `encode`'s order: scattered into zeros, they are its rows."""
        values, indices = self.preactivations(vectors).topk(min(self.k, self.size), dim=1, sorted=False)
        return values.relu(), indices

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes @ self.decoder + self.pre_bias) * self.scale

    def directions(self) -> torch.Tensor:
        return self.decoder

    def drivers(self) -> torch.Tensor:
        return self.encoder.T

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"encoder": self.encoder, "encoder_bias": self.encoder_bias, "decoder": self.decoder,
                "pre_bias": self.pre_bias, "scale": torch.tensor(self.scale), "k": torch.tensor(self.k)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> TopKSAE:
        return cls(tensors["encoder"], tensors["encoder_bias"], tensors["decoder"], tensors["pre_bias"],
                   float(tensors["scale"]), int(tensors["k"]))

    def to(self, device: torch.device) -> TopKSAE:
        return TopKSAE(self.encoder.to(device), self.encoder_bias.to(device), self.decoder.to(device),
                       self.pre_bias.to(device), self.scale, self.k)


def top_k_relu(preactivations: torch.Tensor, k: int) -> torch.Tensor:
    values, indices = preactivations.topk(min(k, preactivations.shape[1]), dim=1, sorted=False)
    return torch.zeros_like(preactivations).scatter_(1, indices, values.relu())


class SaeTrainer:
    """Trains a TopKSAE on (N, channels) vectors with Adam, in steps that can stop and resume: `state()` is
    every number the remaining steps depend on, so a resumed run ends with the same dictionary. Batch b of
    epoch e is a slice of a permutation drawn from (seed, e)."""

    def __init__(self, vectors: torch.Tensor, size: int, k: int, steps: int, batch_size: int = 4096,
                 lr: float = 1e-3, seed: int = 0):
        if not 1 <= k <= size:
            raise ValueError(f"sparsity k must be between 1 and the dictionary size ({size}); got {k}")
        self.vectors, self.steps, self.lr, self.seed = vectors, steps, lr, seed
        self.batch_size = min(batch_size, len(vectors))
        channels = vectors.shape[1]
        generator = torch.Generator().manual_seed(seed)
        # Statistics in float64 on the CPU (Apple's MPS has no float64).
        host = vectors.detach().cpu().double()
        centre = host.mean(dim=0)
        scale = ((host - centre).square().sum(dim=1).mean() / channels).sqrt().clamp_min(1e-12).item()
        decoder = F.normalize(torch.randn(size, channels, generator=generator, dtype=torch.float64), dim=1)
        device = vectors.device
        self.parameters = [p.float().to(device).requires_grad_() for p in (
            decoder.T.clone(),  # encoder, tied to the decoder at the start
            torch.zeros(size, dtype=torch.float64), decoder, centre / scale)]
        self.scale, self.k = scale, k
        self.optimizer = torch.optim.Adam(self.parameters, lr=lr)
        self.step = 0
        self.since_fired = torch.zeros(size, dtype=torch.int64, device=device)  # vectors since each last fired
        self.dead_after = len(vectors)  # a feature silent for a whole epoch is dead (and AuxK's to revive)
        self._epoch, self._order = -1, None

    def dictionary(self) -> TopKSAE:
        encoder, encoder_bias, decoder, pre_bias = (p.detach().clone() for p in self.parameters)
        return TopKSAE(encoder, encoder_bias, decoder, pre_bias, self.scale, self.k)

    def run(self, until: int, after_step: Callable[[int], None] | None = None) -> None:
        """Train up to step `until` (at most `steps`); `after_step(step)` is called after each."""
        while self.step < min(until, self.steps):
            self._train_step(self._batch(self.step))
            self.step += 1
            if after_step:
                after_step(self.step)

    def _batch(self, step: int) -> torch.Tensor:
        per_epoch = len(self.vectors) // self.batch_size
        epoch, slot = divmod(step, per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 1)
            self._epoch, self._order = epoch, torch.randperm(len(self.vectors), generator=generator)
        return self.vectors[self._order[slot * self.batch_size:(slot + 1) * self.batch_size].to(self.vectors.device)]

    def _train_step(self, batch: torch.Tensor) -> None:
        encoder, encoder_bias, decoder, pre_bias = self.parameters
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * min(1.0, (1 - self.step / self.steps) / (1 - DECAY_FROM))
        x = batch / self.scale
        preactivations = (x - pre_bias) @ encoder + encoder_bias
        codes = top_k_relu(preactivations, self.k)
        reconstruction = codes @ decoder + pre_bias
        variance = (x - x.mean(dim=0)).square().sum(dim=1).mean().clamp_min(1e-12)
        loss = (x - reconstruction).square().sum(dim=1).mean() / variance
        fired = (codes > 0).any(dim=0)
        self.since_fired += len(batch)
        self.since_fired[fired] = 0
        dead = self.since_fired > self.dead_after
        if dead.any():  # AuxK: the dead features' top pre-activations reconstruct the residual
            residual = (x - reconstruction).detach()
            aux_k = min(x.shape[1] // 2, int(dead.sum()))
            aux_codes = top_k_relu(preactivations.masked_fill(~dead, float("-inf")), aux_k)  # aux_k <= dead: finite
            residual_variance = (residual - residual.mean(dim=0)).square().sum(dim=1).mean().clamp_min(1e-12)
            loss = loss + AUX_COEFFICIENT * (residual - aux_codes @ decoder).square().sum(dim=1).mean() / \
                residual_variance
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep decoder rows unit-norm: drop the gradient along each row, renormalise
            decoder.grad -= (decoder.grad * decoder).sum(dim=1, keepdim=True) * decoder
        self.optimizer.step()
        with torch.no_grad():
            decoder.copy_(F.normalize(decoder, dim=1))

    def state(self) -> dict[str, torch.Tensor]:
        state = {f"param.{i}": p.detach() for i, p in enumerate(self.parameters)}
        for i, p in enumerate(self.parameters):
            for key, value in self.optimizer.state.get(p, {}).items():
                state[f"adam.{i}.{key}"] = value
        return {**state, "step": torch.tensor(self.step), "since_fired": self.since_fired}

    def load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.parameters):
                p.copy_(state[f"param.{i}"])
                # Moments live beside their parameter; Adam keeps its 0-d step count on the CPU.
                adam = {key.split(".", 2)[2]: value.clone().to(p.device) if value.dim() else value.clone().cpu()
                        for key, value in state.items() if key.startswith(f"adam.{i}.")}
                if adam:
                    self.optimizer.state[p] = adam
        self.step = int(state["step"])
        self.since_fired = state["since_fired"].clone().to(self.since_fired.device)
