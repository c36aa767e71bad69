"""``SlideMetrics``: the scores whole-slide classification is reported with, besides mmpretrain's
``accuracy/top1``: balanced accuracy, macro F1 and ROC AUC (one-vs-rest, averaged over the classes,
for more than two), each in percent like mmpretrain's accuracy. Registered in mmpretrain's METRICS
by ``vmamba_mm.registry``; written without scikit-learn, which the stack does not install."""
import numpy as np
import torch
from mmengine.evaluator import BaseMetric


def balanced_accuracy(labels, predicted, num_classes):
    """The mean over the classes present of each class's recall."""
    recalls = [np.mean(predicted[labels == c] == c) for c in range(num_classes)
               if np.any(labels == c)]
    return float(np.mean(recalls))


def macro_f1(labels, predicted, num_classes):
    """The unweighted mean of the per-class F1 (0 for a class never predicted nor present)."""
    scores = []
    for c in range(num_classes):
        true_positive = np.sum((predicted == c) & (labels == c))
        predicted_count, actual_count = np.sum(predicted == c), np.sum(labels == c)
        if predicted_count + actual_count == 0:
            continue
        scores.append(2 * true_positive / (predicted_count + actual_count))
    return float(np.mean(scores))


def binary_auc(is_positive, scores):
    """ROC AUC as the probability that a positive outscores a negative (ties count half): the
    Mann-Whitney statistic over average ranks. NaN without both a positive and a negative."""
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    if positives == 0 or negatives == 0:
        return float('nan')
    order = np.argsort(scores, kind='mergesort')
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    rank_sum = ranks[is_positive].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def roc_auc(labels, scores):
    """Binary: the AUC of the second class's score; more classes: the mean one-vs-rest AUC over
    the classes present (with at least one negative)."""
    if scores.shape[1] == 2:
        return binary_auc(labels == 1, scores[:, 1])
    per_class = [binary_auc(labels == c, scores[:, c]) for c in range(scores.shape[1])]
    per_class = [value for value in per_class if not np.isnan(value)]
    return float(np.mean(per_class)) if per_class else float('nan')


class SlideMetrics(BaseMetric):
    default_prefix = 'wsi'

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            score = sample['pred_score'] if isinstance(sample, dict) else sample.pred_score
            label = sample['gt_label'] if isinstance(sample, dict) else sample.gt_label
            self.results.append((torch.as_tensor(score).float().cpu().numpy(),
                                 int(torch.as_tensor(label).reshape(-1)[0])))

    def compute_metrics(self, results):
        scores = np.stack([score for score, _ in results])
        labels = np.array([label for _, label in results])
        predicted = scores.argmax(axis=1)
        num_classes = scores.shape[1]
        return dict(balanced_accuracy=100 * balanced_accuracy(labels, predicted, num_classes),
                    macro_f1=100 * macro_f1(labels, predicted, num_classes),
                    auc=100 * roc_auc(labels, scores))
