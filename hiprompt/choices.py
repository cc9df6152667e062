"""The one check of a value against its choice list: the config schema's (at the edge,
`hiprompt.config.RULES`) and that of the library functions taking such a value directly."""


def choices_text(choices) -> str:
    return f"one of {', '.join(map(str, choices))}"


def check_choice(value, choices, name: str):
    """`value` when it is one of `choices`, else a ValueError naming `name` and the choices."""
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected {choices_text(choices)}")
    return value
