"""Reference models without torchvision: MLP, LeNet-5, the Keras MNIST CNN, ResNet-20/34, VGG-16.

``build(name, input_shape, num_classes, **options)`` makes one; ``MODELS`` lists the names.
Models use only Linear, Conv2d, BatchNorm2d, ReLU, pooling, Flatten and Dropout modules, so
compression code can find the weight layers by walking ``model.modules()``.
"""

from fewops.models.registry import MODELS, build, count_parameters
from fewops.models.resnet import BasicBlock, ResNet

__all__ = ["MODELS", "BasicBlock", "ResNet", "build", "count_parameters"]
