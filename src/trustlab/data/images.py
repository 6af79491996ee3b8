"""Image datasets (mnist, digits, colored_mnist, cifar10, waterbirds, celeba) - being written."""
