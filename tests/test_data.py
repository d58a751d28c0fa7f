"""Input pipelines: mock tfds CIFAR-10, packaged data sets, determinism and fast failure."""
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import make_config

from n2nskip_jax import data as data_lib


@pytest.fixture(scope='module')
def cifar():
  config = make_config(dataset='cifar10', batch_size=8, eval_batch_size=12, download=True,
                       shuffle_buffer=64)
  with tfds.testing.mock_data(num_examples=40):
    d = data_lib.load(config)
    yield d, list(d.train_batches(0)), list(d.train_batches(1)), list(d.eval_batches())


def test_cifar_shapes_and_normalization(cifar):
  d, epoch0, _, _ = cifar
  assert (d.num_classes, d.input_shape, d.steps_per_epoch) == (10, (32, 32, 3), 5)
  assert len(epoch0) == 5
  b = epoch0[0]
  assert b['image'].shape == (8, 32, 32, 3) and b['image'].dtype == np.float32
  assert b['label'].dtype == np.int32 and b['label'].shape == (8,)
  # Normalized pixels: uint8 images map into [(0 - mean) / std, (255 - mean) / std].
  assert -2.1 < b['image'].min() < 0 < b['image'].max() < 2.2


def test_epochs_are_deterministic_and_differ(cifar):
  d, epoch0, epoch1, _ = cifar
  again = list(d.train_batches(0))
  for a, b in zip(epoch0, again):
    np.testing.assert_array_equal(a['image'], b['image'])
  assert not np.array_equal(epoch0[0]['image'], epoch1[0]['image'])


def test_resume_offset_replays_the_same_batches(cifar):
  d, _, epoch1, _ = cifar
  tail = list(d.train_batches(1, 3))
  assert len(tail) == 2
  for a, b in zip(epoch1[3:], tail):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])


def test_eval_batches_are_padded_and_masked(cifar):
  d, _, _, batches = cifar
  assert all(b['image'].shape[0] == 12 for b in batches)
  assert sum(b['mask'].sum() for b in batches) == d.num_test == 40


def test_missing_tfds_data_fails_fast_with_instructions(tmp_path):
  config = make_config(dataset='cifar10', data_dir=str(tmp_path))
  start = time.time()
  with pytest.raises(data_lib.DataError) as e:
    data_lib.load(config)
  assert time.time() - start < 30
  message = str(e.value)
  assert str(tmp_path) in message and 'download=True' in message and 'data_dir' in message


@pytest.mark.parametrize('name,shape,n_train,n_test', [('mnist1d', (40,), 4000, 1000),
                                                       ('digits', (8, 8, 1), 1437, 360)])
def test_packaged_data_sets(name, shape, n_train, n_test):
  d = data_lib.load(make_config(dataset=name, batch_size=100, eval_batch_size=100))
  batches = list(d.train_batches(0))
  assert d.input_shape == shape and d.num_test == n_test
  assert len(batches) == d.steps_per_epoch == n_train // 100
  assert batches[0]['image'].shape == (100, *shape)
  labels = np.concatenate([b['label'] for b in batches])
  assert set(labels) == set(range(10))
  # Standardized with training statistics.
  images = np.concatenate([b['image'] for b in batches])
  assert abs(images.mean()) < 0.05 and abs(images.std() - 1) < 0.05


def test_digits_read_without_scikit_learn_equal_its_loader():
  from sklearn.datasets import load_digits
  x, y = data_lib._digits_arrays()
  x_ref, y_ref = load_digits(return_X_y=True)
  np.testing.assert_array_equal(x, x_ref)
  np.testing.assert_array_equal(y, y_ref)


def test_processes_split_the_global_batch():
  config = make_config(dataset='digits', batch_size=64)
  whole = next(data_lib.load(config).train_batches(0))
  parts = [next(data_lib.load(config, i, 2).train_batches(0)) for i in range(2)]
  np.testing.assert_array_equal(np.concatenate([p['label'] for p in parts]), whole['label'])


def test_imagenet_pipeline_crops_to_image_size():
  config = make_config(dataset='imagenet2012', image_size=32, batch_size=4, eval_batch_size=4,
                       download=True, shuffle_buffer=8)
  with tfds.testing.mock_data(num_examples=8):  # mock images come in assorted sizes
    d = data_lib.load(config)
    train, test = next(d.train_batches(0)), list(d.eval_batches())
  assert (d.num_classes, d.input_shape, d.steps_per_epoch) == (1000, (32, 32, 3), 2)
  assert train['image'].shape == (4, 32, 32, 3) and train['image'].dtype == np.float32
  assert all(b['image'].shape == (4, 32, 32, 3) for b in test) and sum(b['mask'].sum() for b in test) == 8
