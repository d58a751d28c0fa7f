"""Default config: the paper's training setup (N2NSkip, BMVC 2020, section 4).

Every key is documented here; ``n2nskip_jax.config.validate`` checks them all before
anything is compiled. Override any key on the command line: ``--config.num_epochs=10``.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # --- model -----------------------------------------------------------------
  c.model = 'resnet50'               # 'mlp' | 'vgg19' | 'resnet50'
  c.width_multiplier = 1.0           # scales every conv width (and VGG's fc width); > 0
  c.resnet_stem = 'cifar'            # 'cifar' (3x3, stride 1, no max-pool) | 'imagenet'
  c.vgg_head = 'paper'               # 'paper' (7x7 pool, 4096-4096-classes) | 'cifar' (1 linear)
  c.mlp_hidden = (512, 256, 128, 64)  # hidden widths of the MLP
  c.half_precision = False           # bf16 compute (params and optimizer stay float32)
  c.init = 'torch'                   # 'torch': the paper's framework's initializers (torchvision
                                     # VGG/ResNet schemes, nn.Linear's default); 'flax': Flax's
                                     # defaults (lecun_normal, zero bias). See models/inits.py.
  # --- data ------------------------------------------------------------------
  c.dataset = 'cifar10'              # 'cifar10' | 'cifar100' | 'imagenet2012' | 'mnist1d' | 'digits'
                                     # | 'digits32' (digits upsampled to 32x32x3, for conv models)
  c.data_dir = ''                    # tfds data_dir; '' means tfds' default (~/tensorflow_datasets)
  c.download = False                 # let tfds download and prepare a missing data set (needs network)
  c.image_size = 224                 # ImageNet crop size
  c.shuffle_buffer = 50_000          # tf.data shuffle buffer (training)
  # --- optimization (paper defaults) ----------------------------------------------
  c.num_epochs = 300
  c.batch_size = 128                 # global batch, split evenly over all devices
  c.eval_batch_size = 500            # global eval batch
  c.learning_rate = 0.05
  c.momentum = 0.9
  c.weight_decay = 5e-4              # coupled (PyTorch-style), applied to every parameter
  c.lr_decay_epochs = 30             # the learning rate is multiplied by lr_decay_factor ...
  c.lr_decay_factor = 0.5            # ... every lr_decay_epochs epochs
  c.seed = 0
  # --- loop, logging, checkpoints --------------------------------------------------
  c.eval_every_epochs = 1
  c.log_every_steps = 50             # train loss and progress; also at every epoch's end
  c.checkpoint_every_steps = 0       # 0: at the end of every epoch; > 0: also every N steps
  c.max_checkpoints_to_keep = 2
  c.restart_on_corrupt = False       # no readable checkpoint left: start over (True) or exit 2
  c.multihost = False                # several processes: call jax.distributed.initialize() first
  c.coordinator_address = ''         # 'host:port' of process 0; '' lets JAX read the cluster's
                                     # environment (SLURM, Open MPI, Kubernetes, Cloud TPU)
  c.num_processes = 0                # 0: from the environment
  c.process_id = -1                  # -1: from the environment
  c.heartbeat_timeout = 100          # seconds without a peer before the others stop
  # --- pruning at initialization (n2nskip_jax.pruning) ----------------------------
  c.pruning = ml_collections.ConfigDict()
  c.pruning.method = 'dense'         # 'dense' | 'rp' | 'magnitude' | 'csp' (= 'snip') | 'grasp'
                                     # | 'synflow' | 'structured' (n2nskip_jax/pruning.py)
  c.pruning.density = 1.0            # in (0, 1], counted against the reference network
  c.pruning.snip_batch_size = 128    # examples in the one batch 'csp' and 'grasp' score with
  c.pruning.grasp_temperature = 200.0  # 'grasp': logits divided by it in the loss (the authors' T)
  c.pruning.synflow_iterations = 100   # 'synflow': pruning rounds, to densities d^(k/n)
  c.pruning.exclude = ()             # regexes on 'layer/path/kernel'; matching kernels stay dense
  c.pruning.rescale = False          # beyond the paper: scale each unit's surviving weights by
                                     # sqrt(dense fan-in / surviving fan-in) after pruning, so its
                                     # initial pre-activation variance is the dense network's
  c.pruning.rescale_normalized = True  # with rescale, also the kernels BatchNorm follows (every
                                     # conv of VGG19 and ResNet50), where a scale changes no
                                     # output (but through BatchNorm's epsilon), only the
                                     # effective learning rate: False is the
                                     # fair baseline on BatchNorm nets (the head alone rescaled)
  c.pruning.shuffle = False          # control: permute each pruned layer's mask at random
                                     # (keeps every layer's density; Frankle et al. 2021)
  c.pruning.reinit = False           # control: the same masks on weights drawn from another seed
  # --- skip connections (n2nskip_jax.models.skips) ------------------------------
  c.skip = ml_collections.ConfigDict()
  c.skip.kind = 'none'               # 'none' | 'n2nskip' (Eq. 2) | 'resskip' (Eq. 1) |
                                     # 'sequential' (control: no skips, their share of the
                                     # budget as random extra sequential weights)
  c.skip.fraction = 0.5              # share of the budget given to skip weights (n2nskip) or
                                     # to the random extra weights (sequential), [0, 1)
  c.skip.span = 3                    # k: layers a skip spans (ResNet50: must be 3, one bottleneck)
  c.skip.kernel_size = 3             # f: conv skip kernel is f x f (odd)
  c.skip.affine = True               # skips' own trainable parameters beyond their kernels,
                                     # outside the budget: the MLP skips' biases, the conv
                                     # skips' BatchNorm scale and shift (False: none, an
                                     # exactly budget-matched comparison; BatchNorm still
                                     # normalizes)
  # --- how the masked layers run (n2nskip_jax.execution; results equal up to float rounding) ---
  # 'auto': the CPU speed-ups on the CPU backend, the core layers on GPU/TPU (docs/PERFORMANCE.md).
  c.execution = ml_collections.ConfigDict()
  c.execution.conv = 'auto'          # 'xla' (lax.conv_general_dilated) | 'patches' (one matmul)
                                     # | 'auto': patches on CPU for 1x1 kernels and maps <= 16
                                     # positions
  c.execution.batch_norm = 'auto'    # 'flax' (nn.BatchNorm) | 'closed_form' (hand-written
                                     # backward) | 'auto': closed_form on CPU
  c.execution.max_pool = 'auto'      # 'flax' (nn.max_pool) | 'reshape' | 'auto': reshape on CPU
  c.execution.sequential = 'auto'    # pruned layers but the skips: 'dense' (kernel * mask) |
                                     # 'sparse' (by their nonzeros: work scales with them) |
                                     # 'auto': sparse on CPU for kernels <= 8 % nonzero (2 %
                                     # without the native kernels)
  c.execution.skip = 'auto'          # the skip layers: as execution.sequential
  return c
