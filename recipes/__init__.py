"""The training recipes, shipped inside the hf_divsft package as `hf_divsft.recipes` (`divsft recipes`)."""
