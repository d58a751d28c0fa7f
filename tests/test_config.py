"""Bad input fails fast with the key, the value and what is allowed; the CLI exits 2."""
import os

import pytest
from conftest import make_config, run_main

from n2nskip_jax.config import ConfigError, validate


@pytest.mark.parametrize('overrides,key', [
    (dict(model='alexnet'), 'model'),
    (dict(dataset='svhn'), 'dataset'),
    (dict(num_epochs=-1), 'num_epochs'),
    (dict(num_epochs=0), 'num_epochs'),
    (dict(learning_rate=-0.1), 'learning_rate'),
    (dict(momentum=1.0), 'momentum'),
    (dict(weight_decay=-1e-4), 'weight_decay'),
    (dict(lr_decay_factor=0.0), 'lr_decay_factor'),
    (dict(width_multiplier=0.0), 'width_multiplier'),
    (dict(model='resnet50', dataset='mnist1d'), 'dataset'),
    (dict(pruning__method='lottery'), 'pruning.method'),
    (dict(pruning__method='rp', pruning__density=0.0), 'pruning.density'),
    (dict(pruning__method='rp', pruning__density=1.5), 'pruning.density'),
    (dict(pruning__density=0.5), 'pruning.density'),  # 'dense' cannot prune
    (dict(pruning__exclude=('[',)), 'pruning.exclude'),
    (dict(skip__kind='highway'), 'skip.kind'),
    (dict(pruning__method='rp', pruning__density=0.1, skip__kind='n2nskip', skip__fraction=1.0),
     'skip.fraction'),
    (dict(pruning__method='rp', pruning__density=0.1, skip__kind='n2nskip', skip__fraction=-0.1),
     'skip.fraction'),
    (dict(model='mlp', skip__span=5), 'skip.span'),
    (dict(model='resnet50', skip__span=2), 'skip.span'),
    (dict(model='resnet50', skip__kind='resskip'), 'skip.kind'),
    (dict(skip__kernel_size=2), 'skip.kernel_size'),
    (dict(learning_rate=float('inf')), 'learning_rate'),
    (dict(learning_rate=1e-31), 'learning_rate'),
    (dict(weight_decay=float('inf')), 'weight_decay'),
    (dict(width_multiplier=float('inf')), 'width_multiplier'),
    (dict(pruning__method='rp', pruning__density=float('nan')), 'pruning.density'),
    (dict(seed=-1), 'seed'),
    (dict(seed=2 ** 64), 'seed'),
    (dict(num_epochs=10 ** 12), 'num_epochs'),
    (dict(num_epochs=3000), 'num_epochs'),  # 0.05 halved every 30 epochs: below 1e-30 at 2910
    (dict(pruning__method='grasp', pruning__density=0.1, pruning__grasp_temperature=0.0),
     'pruning.grasp_temperature'),
    (dict(pruning__method='synflow', pruning__density=0.1, pruning__synflow_iterations=0),
     'pruning.synflow_iterations'),
])
def test_validate_names_the_key(overrides, key):
  with pytest.raises(ConfigError) as e:
    validate(make_config(**overrides))
  assert e.value.key == key and f'config.{key}=' in str(e.value) and 'expected' in str(e.value)


def test_batch_must_divide_over_devices():
  with pytest.raises(ConfigError, match='batch_size=128: expected a multiple of the device count'):
    validate(make_config(batch_size=128), num_devices=3)


def test_defaults_and_shipped_configs_are_valid():
  import importlib
  for name in ('default', 'resnet50_c10', 'resnet50_c100', 'resnet50_imagenet', 'vgg19_c10',
               'vgg19_c100', 'mlp_c10', 'quickstart'):
    c = importlib.import_module(f'n2nskip_jax.configs.{name}').get_config()
    validate(c)
    assert (c.learning_rate, c.momentum, c.weight_decay, c.batch_size) == (0.05, 0.9, 5e-4, 128)


@pytest.mark.parametrize('flags,devices,needle', [
    (['--config.model=alexnet'], 1, "config.model='alexnet'"),
    (['--config.dataset=svhn'], 1, "config.dataset='svhn'"),
    (['--config.num_epochs=-3'], 1, 'config.num_epochs=-3'),
    (['--config.learning_rate=-0.05'], 1, 'config.learning_rate=-0.05'),
    (['--config.batch_size=125'], 2, 'config.batch_size=125: expected a multiple of the device count'),
    (['--config.pruning.density=0.9', '--config.skip.fraction=0.9'], 1,
     'config.skip.fraction=0.9: expected at most 0.2'),  # the skip layers hold 37,888 weights
])
def test_cli_rejects_bad_config(tmp_path, flags, devices, needle):
  r = run_main('--config=configs/quickstart.py', f'--workdir={tmp_path}', *flags, devices=devices)
  assert r.returncode == 2, r.stdout + r.stderr
  assert needle in r.stderr and 'Traceback' not in r.stderr
  assert 'Run directory' not in r.stderr  # named once the config is known to be good


def test_cli_rejects_unwritable_workdir(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  r = run_main('--config=configs/quickstart.py', f'--workdir={blocker}/run')
  assert r.returncode == 2 and 'not a writable directory' in r.stderr and 'Traceback' not in r.stderr


def test_cli_refuses_a_workdir_of_another_config(tmp_path):
  from n2nskip_jax.configs import quickstart
  (tmp_path / 'config.json').write_text(quickstart.get_config().to_json())
  os.makedirs(tmp_path / 'checkpoints' / '31')  # the config binds once a checkpoint exists
  r = run_main('--config=configs/quickstart.py', f'--workdir={tmp_path}', '--config.seed=7')
  assert r.returncode == 2 and "different config (keys ['seed'])" in r.stderr


def test_the_default_run_directory_is_named_after_the_config_file():
  from n2nskip_jax import rundir
  from n2nskip_jax.configs import quickstart
  workdir = rundir.default_workdir('configs/quickstart.py', quickstart.get_config())
  assert os.path.basename(workdir).startswith('quickstart-')


def test_a_collapsed_network_trains_and_its_warning_follows_the_result_line(tmp_path):
  """9 weights over 4 layers: the output cannot be reached, which a study measures, so the run
  goes on; the warning is repeated where the result is read."""
  r = run_main('--config=configs/quickstart.py', '--config.dataset=digits', '--config.num_epochs=1',
               '--config.mlp_hidden=32,16,16', '--config.pruning.density=0.003',
               '--config.skip.kind=none', f'--workdir={tmp_path}')
  assert r.returncode == 0, r.stderr[-2000:]
  result, collapse, dead = r.stdout.strip().splitlines()[-3:]
  assert result.startswith('  skip.kind=none') and 'nonzero weights 9 ' in result, r.stdout
  assert collapse.startswith('    warning: layer collapse:') and 'no path' in collapse, r.stdout
  assert dead.startswith('    warning: 64 of 64 hidden units'), r.stdout
