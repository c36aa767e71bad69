"""How the config checks name a value in their messages ('an int', a shortened repr)."""
import numbers


def kind_of(value):
    if value is None:
        return 'None'
    if isinstance(value, bool):
        return 'a bool'
    if isinstance(value, numbers.Integral):
        return 'an int'
    if isinstance(value, numbers.Real):
        return 'a float'
    if isinstance(value, str):
        return 'a str'
    if isinstance(value, (list, tuple)):
        return f'a {type(value).__name__}'
    if isinstance(value, dict):
        return 'a dict'
    return f'a {type(value).__name__}'


def short_repr(value, limit=60):
    text = repr(value.to_dict() if hasattr(value, 'to_dict') else value)
    return text if len(text) <= limit else text[:limit - 3] + '...'
