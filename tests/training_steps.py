"""A few optimiser steps of a small classifier, for the tests that check a model trains."""
import torch.nn.functional as F
from torch import optim


def losses_of_a_few_steps(model, images, labels, steps=6, lr=1e-2):
    """The cross-entropy loss before each of ``steps`` AdamW steps on one batch."""
    optimizer = optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
