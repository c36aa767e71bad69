"""``config_dicts``: every dict of a nested config with its dotted key, for the checks and rewrites
that look for a kind of component wherever a config puts it (SyncBN layers, heads with
``num_classes``, VSSM backbones)."""


def config_dicts(node, key, skip=()):
    """[(dotted key, dict)] for every dict in ``node`` (dicts, lists and tuples nested in any way),
    each before the dicts inside it; the values of keys named in ``skip`` are not entered. The
    list is made before it is returned, so its dicts can be changed while going through it."""
    found = []

    def visit(node, key):
        if isinstance(node, dict):
            found.append((key, node))
            for name, value in node.items():
                if name not in skip:
                    visit(value, f'{key}.{name}')
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                visit(value, f'{key}.{index}')

    visit(node, key)
    return found
