from setuptools import find_packages, setup

setup(
    name="hiprompt",
    version="0.1.0",
    description=(
        "Data-free multi-label image recognition: hierarchical prompt tuning of a frozen "
        "CLIP on LLM-generated text"
    ),
    python_requires=">=3.9",
    # `trainers/` and `datasets/` are CoOp-style plug-in folders used from the repo root;
    # they are never installed (a top-level `datasets` would shadow Hugging Face's).
    packages=find_packages(include=["hiprompt", "hiprompt.*", "llm_knowledge", "llm_knowledge.*"]),
    include_package_data=True,
    package_data={"hiprompt": ["toyworld/*.pt", "toyworld/*.json"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "open-clip-torch>=2.29",
        "yacs>=0.1.8",
        "tabulate>=0.9",
        "tqdm>=4.60",
        "numpy>=1.23",
        "Pillow>=9.0",
        "httpx>=0.25",
    ],
    extras_require={
        "llm": [
            "llama-cpp-python[server]>=0.3.0",
            "chatglm-cpp==0.4.2",
        ],
        "taidpt": [
            "nltk>=3.8",  # `python -m llm_knowledge.captions --labeller taidpt` (and NLTK's data)
        ],
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "scikit-learn>=1.2",  # an independent average precision for the metric tests
            "sentencepiece>=0.1.99",  # chatglm-cpp's converter, used to write a tiny test model
            "transformers>=4.40",
            "matplotlib>=3.5",  # the table scripts' pictures (scripts/tables/)
        ],
        "tables": ["matplotlib>=3.5"],  # scripts/tables/: the tables' and figures' PNGs
        "scale": ["pyarrow>=14"],  # `hiprompt tag --out-dir OUT --format parquet` (docs/tag-at-scale.md)
    },
    entry_points={"console_scripts": ["llm-knowledge=llm_knowledge.cli:main", "hiprompt=hiprompt.apps.cli:main"]},
)
