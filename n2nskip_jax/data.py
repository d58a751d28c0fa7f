"""Input pipelines: tfds (CIFAR-10/100, ImageNet2012) through tf.data, and data sets that
ship inside packages (MNIST-1D, scikit-learn's digits) as numpy arrays.

Every source yields the same thing: per-process numpy batches ``{'image', 'label'}`` for
training and ``{'image', 'label', 'mask'}`` for evaluation (``mask`` is 0 on padding).
The order of epoch ``e`` is a pure function of ``(seed, e)``, and augmentation uses
stateless random ops seeded by ``(seed, e, position)``, so a run resumed at step ``s``
replays exactly the batches an uninterrupted run would have seen.
"""
import dataclasses
import functools
import importlib.util
import os
from typing import Callable, Iterator, NamedTuple

import numpy as np

from n2nskip_jax import checks
from n2nskip_jax.errors import UserError

DATASETS = {  # name -> (num_classes, example shape, source)
    'cifar10': (10, (32, 32, 3), 'tfds'),
    'cifar100': (100, (32, 32, 3), 'tfds'),
    'imagenet2012': (1000, None, 'tfds'),
    'mnist1d': (10, (40,), 'package'),
    'digits': (10, (8, 8, 1), 'package'),
    'digits32': (10, (32, 32, 3), 'package'),
}
IMAGE_DATASETS = ('cifar10', 'cifar100', 'imagenet2012', 'digits32')
_MEAN_STD = {  # per-channel, on [0, 1] pixels
    'cifar10': ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    'cifar100': ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'imagenet2012': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def check_config(config) -> None:
  """Checks the data keys (``dataset``, ``download``, ``image_size``, ``shuffle_buffer``)."""
  checks.choice(config, 'dataset', tuple(DATASETS))
  checks.boolean(config, 'download')
  for key in ('image_size', 'shuffle_buffer'):
    checks.positive_int(config, key)


class DataError(UserError):
  """The data set cannot be read (not prepared, no download allowed)."""


@dataclasses.dataclass
class Data:
  """A data set ready for the training loop.

  Attributes:
    num_classes: classifier outputs.
    input_shape: shape of one example.
    steps_per_epoch: global batches per epoch (the remainder is dropped).
    train_batches: ``(epoch, start) -> iterator`` over this process's share of the global
      batches of ``epoch``, beginning at batch ``start``.
    eval_batches: ``() -> iterator`` over the test set, padded to full batches.
    num_test: test examples this process evaluates.
  """
  num_classes: int
  input_shape: tuple[int, ...]
  steps_per_epoch: int
  train_batches: Callable[[int, int], Iterator[dict]]
  eval_batches: Callable[[], Iterator[dict]]
  num_test: int


class DataSpec(NamedTuple):
  """What the network is built for: classifier outputs and the shape of one example."""
  num_classes: int
  input_shape: tuple[int, ...]


def spec(config) -> DataSpec:
  """The :class:`DataSpec` of ``config.dataset``, without reading any data: computed once by
  whoever runs the network (the training loop, the analysis of a run directory) and passed
  down to what builds or prunes it."""
  num_classes, shape, _ = DATASETS[config.dataset]
  return DataSpec(num_classes, shape or (config.image_size, config.image_size, 3))


def load(config, process_index: int = 0, process_count: int = 1) -> Data:
  """Builds the :class:`Data` of ``config.dataset`` for this process."""
  if DATASETS[config.dataset][2] == 'package':
    arrays = {'mnist1d': _mnist1d, 'digits': _digits, 'digits32': _digits32}[config.dataset]()
    return _from_arrays(*arrays, config, process_index, process_count)
  return _from_tfds(config, process_index, process_count)


# --- data sets shipped in packages ------------------------------------------------

def _once(make):
  """Builds a data set once per process (generating MNIST-1D takes seconds, and a study trains
  many runs in one process); its arrays are read-only."""
  @functools.cache
  def cached():
    arrays = make()
    for a in arrays:
      a.flags.writeable = False
    return arrays
  return cached


@_once
def _mnist1d():
  """MNIST-1D (Greydanus 2020), generated offline: 4000 train / 1000 test, length 40."""
  from mnist1d.data import get_dataset_args, make_dataset
  d = make_dataset(get_dataset_args())
  return d['x'], d['y'], d['x_test'], d['y_test']


@_once
def _digits():
  """scikit-learn's 8x8 digits (1797 images), split 80/20 with a fixed permutation."""
  x, y = _digits_arrays()
  order = np.random.RandomState(0).permutation(len(x))
  x, y = x[order].reshape(-1, 8, 8, 1), y[order]
  n = int(0.8 * len(x))
  return x[:n], y[:n], x[n:], y[n:]


def _digits_arrays():
  """``sklearn.datasets.load_digits(return_X_y=True)``, read from the CSV file scikit-learn
  ships, without importing scikit-learn (2 s of imports in every process that trains on
  digits); through scikit-learn where that file is not found."""
  spec = importlib.util.find_spec('sklearn')
  folder = spec.submodule_search_locations[0] if spec and spec.submodule_search_locations else ''
  path = os.path.join(folder, 'datasets', 'data', 'digits.csv.gz')
  if os.path.isfile(path):
    data = np.loadtxt(path, delimiter=',')
    return data[:, :-1], data[:, -1].astype(int)
  from sklearn.datasets import load_digits
  return load_digits(return_X_y=True)


@_once
def _digits32():
  """:func:`_digits` upsampled 4x (nearest) to 32x32 and repeated over 3 channels: a small
  image data set that ships in a package, shaped like CIFAR for the conv models."""
  x, y, x_test, y_test = _digits()
  up = lambda a: np.repeat(np.repeat(np.repeat(a, 4, axis=1), 4, axis=2), 3, axis=3)
  return up(x), y, up(x_test), y_test


def _from_arrays(x, y, x_test, y_test, config, process_index, process_count) -> Data:
  mean, std = x.mean(), x.std()  # train statistics only
  x = ((x - mean) / std).astype(np.float32)
  x_test = ((x_test - mean) / std).astype(np.float32)
  y, y_test = y.astype(np.int32), y_test.astype(np.int32)
  gbs, local = config.batch_size, config.batch_size // process_count
  steps = len(x) // gbs

  def train_batches(epoch, start=0):
    order = np.random.default_rng([config.seed, epoch]).permutation(len(x))
    for s in range(start, steps):
      idx = order[s * gbs + process_index * local:s * gbs + (process_index + 1) * local]
      yield {'image': x[idx], 'label': y[idx]}

  shard = slice(process_index, None, process_count)
  xt, yt = x_test[shard], y_test[shard]

  def eval_batches():  # as many batches on every process (collectives must match)
    bs = config.eval_batch_size // process_count
    for i in range(0, -(-len(x_test) // process_count), bs):
      yield _pad({'image': xt[i:i + bs], 'label': yt[i:i + bs]}, bs)

  num_classes, shape, _ = DATASETS[config.dataset]
  return Data(num_classes, shape, steps, train_batches, eval_batches, len(xt))


def _pad(batch: dict, size: int) -> dict:
  n = len(batch['label'])
  out = {k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
  out['mask'] = (np.arange(size) < n).astype(np.float32)
  return out


# --- tfds -------------------------------------------------------------------------

def _tf():
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; keep the accelerators for JAX
  return tf


def _builder(config):
  import tensorflow_datasets as tfds
  data_dir = config.data_dir or None
  builder = tfds.builder(config.dataset, data_dir=data_dir, try_gcs=False)
  if not builder.is_prepared():
    if not config.download:
      where = config.data_dir or os.environ.get('TFDS_DATA_DIR') or os.path.expanduser(
          '~/tensorflow_datasets')
      manual = ('ImageNet cannot be downloaded: put the ILSVRC2012 tar files in '
                f'{os.path.join(where, "downloads", "manual")} and prepare with download=True; '
                if config.dataset == 'imagenet2012' else '')
      raise DataError(
          f'tfds data set {config.dataset!r} is not prepared under {where} '
          f'(looked for {builder.data_dir}). {manual}Either prepare it there '
          f'(`tfds build {config.dataset} --data_dir={where}` on a machine with network, '
          'then copy the folder), point --config.data_dir at a folder that holds it, or '
          'pass --config.download=True to let tfds download it now (needs network).')
    builder.download_and_prepare()
  return builder


def _from_tfds(config, process_index, process_count) -> Data:
  import tensorflow_datasets as tfds
  tf = _tf()
  builder = _builder(config)
  num_classes = DATASETS[config.dataset][0]
  imagenet = config.dataset == 'imagenet2012'
  size = config.image_size if imagenet else 32
  mean = tf.constant(_MEAN_STD[config.dataset][0]) * 255
  std = tf.constant(_MEAN_STD[config.dataset][1]) * 255
  local = config.batch_size // process_count
  split = lambda name: tfds.split_for_jax_process(name, process_index=process_index,
                                                  process_count=process_count, drop_remainder=True)
  read = lambda name: builder.as_dataset(split=split(name), shuffle_files=False,
                                         read_config=tfds.ReadConfig(shuffle_seed=config.seed))
  train = read('train')
  steps = int(train.cardinality()) // local
  normalize = lambda image: (tf.cast(image, tf.float32) - mean) / std

  def augment(seed, example):
    image = example['image']
    if imagenet:
      image = _random_resized_crop(tf, image, size, seed)
    else:
      image = tf.image.resize_with_crop_or_pad(image, size + 8, size + 8)
      image = tf.image.stateless_random_crop(image, (size, size, 3), seed)
    image = tf.image.stateless_random_flip_left_right(image, seed + 1)
    return {'image': normalize(image), 'label': tf.cast(example['label'], tf.int32)}

  def train_batches(epoch, start=0):
    ds = train.shuffle(config.shuffle_buffer, seed=config.seed * 100_003 + epoch,
                       reshuffle_each_iteration=False)
    ds = ds.enumerate().map(
        lambda i, ex: augment(tf.stack([tf.cast(config.seed * 100_003 + epoch, tf.int64), i]), ex),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local, drop_remainder=True).skip(start).prefetch(2)
    yield from tfds.as_numpy(ds)

  test_name = 'validation' if imagenet else 'test'
  test = read(test_name)
  num_test = int(test.cardinality())

  def preprocess_eval(example):
    image = example['image']
    if imagenet:
      image = _center_crop(tf, image, size)
    return {'image': normalize(image), 'label': tf.cast(example['label'], tf.int32)}

  def eval_batches():
    bs = config.eval_batch_size // process_count
    ds = test.map(preprocess_eval, num_parallel_calls=tf.data.AUTOTUNE).batch(bs).prefetch(2)
    for batch in tfds.as_numpy(ds):
      yield _pad(batch, bs)

  shape = (size, size, 3)
  return Data(num_classes, shape, steps, train_batches, eval_batches, num_test)


def _random_resized_crop(tf, image, size, seed):
  """Inception-style crop (area 8-100 %, aspect 3/4-4/3), resized to ``size``."""
  begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), tf.zeros([0, 0, 4]), seed, min_object_covered=0.0,
      aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, extent)
  return tf.image.resize(image, (size, size), method='bicubic')


def _center_crop(tf, image, size):
  """Resizes the shorter side to ``size * 256 / 224`` and crops the centre ``size``."""
  short = tf.cast(tf.reduce_min(tf.shape(image)[:2]), tf.float32)
  scale = size * 256 / 224 / short
  hw = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
  image = tf.image.resize(image, hw, method='bicubic')
  return tf.image.resize_with_crop_or_pad(image, size, size)
