"""How many items each question asks for: named profiles and `name=value` overrides."""

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Counts:
    n_common: int  # Π1a: attributes common to all classes (paper: 90)
    n_class: int  # Π1b: attributes of one class (paper: 30)
    n_sentences: int  # Π2: sentences per (class, attribute) question (paper: 100)
    n_keep: int  # Π3: attributes that remain after filtering (paper: 70)
    n_relation: int  # Π5: sentences per pair of classes (paper: 100)
    n_pairs: int  # Π5: pairs of classes asked about per subgroup (paper: not given)
    seed: int  # picks the pairs of a subgroup when it has more than n_pairs

    def as_dict(self) -> dict:
        return asdict(self)


PROFILES = {
    "paper": Counts(
        n_common=90, n_class=30, n_sentences=100, n_keep=70, n_relation=100, n_pairs=10, seed=0
    ),
    "small": Counts(
        n_common=3, n_class=2, n_sentences=3, n_keep=2, n_relation=3, n_pairs=1, seed=0
    ),
}


def build_counts(profile: str, overrides=()) -> Counts:
    """The counts of `profile` with `overrides` ("name=value" strings) applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    counts = PROFILES[profile]
    names = {f.name for f in fields(Counts)}
    for item in overrides:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise ValueError(
                f"bad count override {item!r}: expected NAME=INTEGER with NAME one of "
                f"{sorted(names)}"
            )
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"bad count override {item!r}: {value!r} is not an integer") from None
        if number < (0 if name == "seed" else 1):
            raise ValueError(f"bad count override {item!r}: must be positive")
        counts = replace(counts, **{name: number})
    return counts
