"""The model's heads against the data: ``num_classes`` of each head against a split's classes, and a
loss ``class_weight`` list against the class scores its head gives."""
from ..config.walk import config_dicts
from .errors import DataError


def model_heads(model_cfg):
    """(config key, config) of every part of the model that declares ``num_classes``."""
    return [(key, node) for key, node in config_dicts(
                model_cfg, 'model', skip=('train_cfg', 'test_cfg', 'data_preprocessor'))
            if 'num_classes' in node and key.split('.')[-1] != 'model']


def _head_class_counts(model_cfg):
    """(config key, num_classes) for every head of the model that declares one."""
    return [(f'{key}.num_classes', head['num_classes']) for key, head in model_heads(model_cfg)]


def check_head_classes(cfg, where, classes, ignored_heads=()):
    for key, count in _head_class_counts(cfg.get('model') or {}):
        if key in ignored_heads or not isinstance(count, int):
            continue
        if count != len(classes):
            raise DataError(f'{key} is {count} but {where} has {len(classes)} classes '
                            f'{list(classes)[:10]}{" ..." if len(classes) > 10 else ""}; set '
                            f'--cfg-options {key}={len(classes)} (or change the classes).')


# ------------------------------------------------------------------------- loss class weights


def _losses_with_class_weight(head, key):
    """(config key, loss config) for the losses of head that set a class_weight list.

    Losses of a nested head that declares its own num_classes belong to that head.
    """
    found = []

    def walk(node, node_key, top):
        if isinstance(node, dict):
            if not top and 'num_classes' in node:
                return
            if isinstance(node.get('class_weight'), (list, tuple)):
                found.append((node_key, node))
            for name, value in node.items():
                if name not in ('train_cfg', 'test_cfg'):
                    walk(value, f'{node_key}.{name}', False)
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f'{node_key}.{index}', False)

    walk(head, key, True)
    return found


def _scores_per_pixel_or_box(head, loss, scope):
    """How many class scores the loss weighs, and why where that is not num_classes."""
    num_classes = head['num_classes']
    if scope == 'mmdet' and not (loss.get('use_sigmoid') or loss.get('use_mask')):
        return num_classes + 1, ' + 1 (a softmax head of mmdet also scores the background)'
    if scope == 'mmseg' and isinstance(head.get('out_channels'), int):
        return head['out_channels'], f' (out_channels {head["out_channels"]})'
    return num_classes, ''


def check_loss_class_weights(cfg):
    """A class_weight of another length than its head's classes stops the run, naming the key.

    Torch would fail inside the first loss with 'weight tensor should be defined either for all
    or no classes', naming neither the key nor the lengths.
    """
    scope = cfg.get('default_scope')
    for head_key, head in model_heads(cfg.get('model') or {}):
        if not isinstance(head.get('num_classes'), int):
            continue
        for loss_key, loss in _losses_with_class_weight(head, head_key):
            expected, why = _scores_per_pixel_or_box(head, loss, scope)
            weights = loss['class_weight']
            if len(weights) != expected:
                raise DataError(
                    f'{loss_key}.class_weight has {len(weights)} entries but the loss weighs '
                    f'{expected} class scores: {head_key}.num_classes {head["num_classes"]}'
                    f'{why}; give one weight per class score, --cfg-options '
                    f'{loss_key}.class_weight="[w1,...,w{expected}]", or weigh them all alike '
                    f'with {loss_key}.class_weight=None.')
