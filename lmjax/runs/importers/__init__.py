"""Checkpoints written by other libraries, read as lmjax models: Hugging Face transformers
directories (GPT-2, BERT, T5) and llama2.c `.bin` files."""
