"""What each data set is: where its files live, how to fetch and verify them. Folders follow torchvision's layout
(`<root>/MNIST/raw/...`), so a data root filled by torchvision works here unchanged, and the other way round."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FileSpec:
    name: str  # base name, without ".gz"; the file may be stored either way
    sha256: str | None  # of the DECOMPRESSED bytes: independent of how it was gzipped
    md5_gz: str | None  # of the mirrors' .gz, checked only right after a download


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    folder: str  # under the data root
    train_images: FileSpec
    train_labels: FileSpec
    test_images: FileSpec
    test_labels: FileSpec
    mirrors: tuple[str, ...]  # base URLs ending in "/", tried in order
    mean: float  # of the training pixels scaled to [0, 1]
    std: float
    classes: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()  # where a system package installs them: searched after the root, read-only

    @property
    def files(self) -> tuple[FileSpec, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


MNIST = DatasetSpec(
    name="mnist",
    folder="MNIST/raw",
    # The sha256 values are the widely published ones for the original files.
    train_images=FileSpec(
        "train-images-idx3-ubyte",
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    train_labels=FileSpec(
        "train-labels-idx1-ubyte",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    test_images=FileSpec(
        "t10k-images-idx3-ubyte",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    test_labels=FileSpec(
        "t10k-labels-idx1-ubyte",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    # torchvision's order: the S3 copy first, LeCun's site is often down.
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    mean=0.1307,
    std=0.3081,
    classes=tuple(str(d) for d in range(10)),
)

# No sha256 of the decompressed Fashion-MNIST files is widely published, so none is pinned:
# downloads are checked by the mirror .gz md5 (torchvision's values), files on disk by structure only.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    folder="FashionMNIST/raw",
    train_images=FileSpec("train-images-idx3-ubyte", None, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    train_labels=FileSpec("train-labels-idx1-ubyte", None, "25c81989df183df01b3e8a0aad5dffbe"),
    test_images=FileSpec("t10k-images-idx3-ubyte", None, "bef4ecab320f06d8554ea6380940ec79"),
    test_labels=FileSpec("t10k-labels-idx1-ubyte", None, "bb300cfdad3c16e7a12a480ee83cd310"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    mean=0.2860,
    std=0.3530,
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    # `apt-get install dataset-fashion-mnist` puts the four .gz files flat here.
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}
