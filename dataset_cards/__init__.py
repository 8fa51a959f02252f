"""The dataset card templates, shipped inside the hf_divsft package as `hf_divsft.dataset_cards`."""
