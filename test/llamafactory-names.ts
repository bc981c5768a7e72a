// Names from the projects the LLaMA-Factory export targets, kept here so the tests check the
// export against the real lists rather than against the exporter's own constants.

/** hiyouga/LLaMA-Factory, the commit the names were read at. */
export const LLAMAFACTORY_COMMIT = 'ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30';
/** huggingface/transformers src/transformers/training_args.py, the commit its fields were read at. */
export const TRANSFORMERS_COMMIT = '00349ae87eddc872ffa21a8a54f264375a0056a8';

/** Every dataclass field of LLaMA-Factory's src/llamafactory/hparams/{model,data,finetuning,training,generating}_args.py. */
export const LLAMAFACTORY_ARGS = new Set([
  // hparams/model_args.py
  'adapter_folder', 'adapter_name_or_path', 'add_special_tokens', 'add_tokens', 'audio_sampling_rate', 'block_diag_attn',
  'cache_dir', 'compute_dtype', 'crop_to_patches', 'device_map', 'disable_gradient_checkpointing', 'double_quantization',
  'enable_liger_kernel', 'export_device', 'export_dir', 'export_hub_model_id', 'export_legacy_format', 'export_quantization_bit',
  'export_quantization_dataset', 'export_quantization_maxlen', 'export_quantization_nsamples', 'export_size', 'flash_attn', 'hf_hub_token',
  'image_do_pan_and_scan', 'image_max_pixels', 'image_min_pixels', 'infer_backend', 'infer_dtype', 'init_special_tokens',
  'kt_cpu_activation', 'kt_expert_checkpoint_path', 'kt_lora_expert_intermediate_size', 'kt_lora_expert_num', 'kt_non_expert_weight_path', 'kt_use_lora_experts',
  'kt_weight_path', 'low_cpu_mem_usage', 'mixture_of_depths', 'model_max_length', 'model_name_or_path', 'model_revision',
  'moe_aux_loss_coef', 'ms_hub_token', 'new_special_tokens_config', 'offload_folder', 'om_hub_token', 'print_param_status',
  'quantization_bit', 'quantization_device_map', 'quantization_method', 'quantization_type', 'resize_vocab', 'rope_scaling',
  'sglang_config', 'sglang_lora_backend', 'sglang_maxlen', 'sglang_mem_fraction', 'sglang_tp_size', 'shift_attn',
  'split_special_tokens', 'train_from_scratch', 'trust_remote_code', 'upcast_layernorm', 'upcast_lmhead_output', 'use_audio_in_video',
  'use_fast_tokenizer', 'use_kt', 'use_kv_cache', 'use_reentrant_gc', 'use_unsloth', 'use_unsloth_gc',
  'use_v1_kernels', 'video_fps', 'video_max_pixels', 'video_maxlen', 'video_min_pixels', 'vllm_config',
  'vllm_enforce_eager', 'vllm_gpu_util', 'vllm_max_lora_rank', 'vllm_maxlen',
  // hparams/data_args.py
  'buffer_size', 'cutoff_len', 'data_shared_file_system', 'dataset', 'dataset_dir', 'default_system',
  'enable_thinking', 'eval_dataset', 'eval_num_beams', 'eval_on_each_dataset', 'ignore_pad_token_for_loss', 'interleave_probs',
  'mask_history', 'max_samples', 'media_dir', 'mix_strategy', 'neat_packing', 'overwrite_cache',
  'packing', 'preprocessing_batch_size', 'preprocessing_num_workers', 'preserve_thinking', 'streaming', 'template',
  'tokenized_path', 'tool_format', 'train_on_prompt', 'val_size',
  // hparams/finetuning_args.py
  'additional_target', 'apollo_layerwise', 'apollo_proj', 'apollo_proj_type', 'apollo_rank', 'apollo_scale',
  'apollo_scale_front', 'apollo_scale_type', 'apollo_target', 'apollo_update_interval', 'asft_alpha', 'badam_mask_mode',
  'badam_mode', 'badam_start_block', 'badam_switch_interval', 'badam_switch_mode', 'badam_update_ratio', 'badam_verbose',
  'compute_accuracy', 'create_new_adapter', 'disable_shuffling', 'dpo_label_smoothing', 'eaft_alpha', 'early_stopping_steps',
  'finetuning_type', 'freeze_extra_modules', 'freeze_language_model', 'freeze_multi_modal_projector', 'freeze_trainable_layers', 'freeze_trainable_modules',
  'freeze_vision_tower', 'galore_layerwise', 'galore_proj_type', 'galore_rank', 'galore_scale', 'galore_target',
  'galore_update_interval', 'hyper_parallel_args', 'hyper_parallel_cp_size', 'include_effective_tokens_per_second', 'kto_chosen_weight', 'kto_rejected_weight',
  'ld_alpha', 'lora_alpha', 'lora_dropout', 'lora_rank', 'lora_target', 'loraplus_lr_embedding',
  'loraplus_lr_ratio', 'megatron_bridge_args', 'module_dropout', 'oft_block_size', 'oft_rank', 'oft_target',
  'pissa_convert', 'pissa_init', 'pissa_iter', 'plot_loss', 'ppo_buffer_size', 'ppo_epochs',
  'ppo_score_norm', 'ppo_target', 'ppo_whiten_rewards', 'pref_bco_weight', 'pref_beta', 'pref_ftx',
  'pref_loss', 'pure_bf16', 'ref_model', 'ref_model_adapters', 'ref_model_quantization_bit', 'reward_model',
  'reward_model_adapters', 'reward_model_quantization_bit', 'reward_model_type', 'simpo_gamma', 'stage', 'swanlab_api_key',
  'swanlab_lark_secret', 'swanlab_lark_webhook_url', 'swanlab_logdir', 'swanlab_mode', 'swanlab_project', 'swanlab_run_name',
  'swanlab_workspace', 'use_adam_mini', 'use_apollo', 'use_asft_loss', 'use_badam', 'use_dft_loss',
  'use_dora', 'use_eaft_loss', 'use_galore', 'use_hyper_parallel', 'use_llama_pro', 'use_mca',
  'use_megatron_bridge', 'use_muon', 'use_rslora', 'use_swanlab',
  // hparams/training_args.py
  'enable_torch_profiler', 'fp8', 'fp8_backend', 'fp8_enable_fsdp_float8_all_gather', 'master_addr', 'master_port',
  'overwrite_output_dir', 'profile_modules', 'profiler_active_steps', 'profiler_output_dir', 'profiler_profile_memory', 'profiler_record_shapes',
  'profiler_repeat', 'profiler_wait_steps', 'profiler_warmup_steps', 'profiler_with_stack', 'ray_init_kwargs', 'ray_num_workers',
  // hparams/generating_args.py
  'do_sample', 'length_penalty', 'max_length', 'max_new_tokens', 'num_beams', 'repetition_penalty',
  'skip_special_tokens', 'temperature', 'top_k', 'top_p',
]);

/**
 * The fields of transformers' TrainingArguments (LLaMA-Factory's TrainingArguments extends
 * Seq2SeqTrainingArguments, which extends it). warmup_ratio is deprecated there (to be
 * removed in 5.2) but still a field; LLaMA-Factory's examples at the commit above use it.
 */
export const TRANSFORMERS_TRAINING_ARGS = new Set([
  'output_dir', 'per_device_train_batch_size', 'num_train_epochs', 'max_steps', 'learning_rate', 'lr_scheduler_type',
  'lr_scheduler_kwargs', 'warmup_steps', 'optim', 'optim_args', 'weight_decay', 'adam_beta1', 'adam_beta2', 'adam_epsilon',
  'optim_target_modules', 'gradient_accumulation_steps', 'average_tokens_across_devices', 'max_grad_norm', 'label_smoothing_factor',
  'bf16', 'fp16', 'bf16_full_eval', 'fp16_full_eval', 'tf32', 'gradient_checkpointing', 'gradient_checkpointing_kwargs',
  'torch_compile', 'torch_compile_backend', 'torch_compile_mode', 'use_liger_kernel', 'liger_kernel_config', 'use_cache',
  'neftune_noise_alpha', 'torch_empty_cache_steps', 'auto_find_batch_size', 'logging_strategy', 'logging_steps', 'logging_first_step',
  'log_on_each_node', 'logging_nan_inf_filter', 'include_num_input_tokens_seen', 'log_level', 'log_level_replica', 'disable_tqdm',
  'report_to', 'run_name', 'project', 'trackio_space_id', 'eval_strategy', 'eval_steps', 'eval_delay', 'per_device_eval_batch_size',
  'prediction_loss_only', 'eval_on_start', 'eval_do_concat_batches', 'eval_use_gather_object', 'eval_accumulation_steps',
  'include_for_metrics', 'batch_eval_metrics', 'save_only_model', 'save_strategy', 'save_steps', 'save_on_each_node', 'save_total_limit',
  'enable_jit_checkpoint', 'push_to_hub', 'hub_token', 'hub_private_repo', 'hub_model_id', 'hub_strategy', 'hub_always_push',
  'hub_revision', 'load_best_model_at_end', 'metric_for_best_model', 'greater_is_better', 'ignore_data_skip',
  'restore_callback_states_from_checkpoint', 'full_determinism', 'seed', 'data_seed', 'use_cpu', 'accelerator_config',
  'parallelism_config', 'dataloader_drop_last', 'dataloader_num_workers', 'dataloader_pin_memory', 'dataloader_persistent_workers',
  'dataloader_prefetch_factor', 'remove_unused_columns', 'label_names', 'train_sampling_strategy', 'length_column_name',
  'ddp_find_unused_parameters', 'ddp_bucket_cap_mb', 'ddp_broadcast_buffers', 'ddp_backend', 'ddp_timeout', 'fsdp', 'fsdp_config',
  'deepspeed', 'debug', 'skip_memory_metrics', 'do_train', 'do_eval', 'do_predict', 'resume_from_checkpoint', 'warmup_ratio',
  'logging_dir', 'local_rank',
]);

/** transformers' SchedulerType values the export may write (trainer_utils.py). */
export const TRANSFORMERS_SCHEDULERS = new Set(['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup', 'inverse_sqrt', 'reduce_lr_on_plateau', 'cosine_with_min_lr', 'warmup_stable_decay']);

/** LLaMA-Factory's registered template names (src/llamafactory/data/template.py). */
export const LLAMAFACTORY_TEMPLATES = new Set([
  'alpaca', 'bailing', 'bailing_v2', 'breeze', 'chatglm3', 'chatml', 'chatml_de',
  'cohere', 'cpm4', 'dbrx', 'deepseek', 'deepseek3', 'deepseekr1', 'hy3', 'deepseekcoder',
  'default', 'dots_ocr', 'empty', 'ernie', 'ernie_nothink', 'ernie_vl', 'exaone', 'falcon',
  'falcon_h1', 'fewshot', 'gemma', 'gemma2', 'gemma3', 'gemma3n', 'gemma4', 'gemma4n',
  'glm4', 'glm4_moe', 'glm4v', 'glm4_5v', 'glm_ocr', 'glm4_7', 'glmz1', 'gpt_oss',
  'granite3', 'granite3_vision', 'granite4', 'index', 'hunyuan', 'hunyuan_small', 'hy_dense_1_8b', 'hy_dense_7b',
  'intern2', 'intern_vl', 'intern_s1', 'keye_vl', 'kimi_vl', 'lfm2', 'lfm2_vl', 'llama2',
  'llama2_zh', 'llama3', 'llama4', 'mllama', 'moonlight', 'moss_vl', 'llava', 'llava_next',
  'llava_next_llama3', 'llava_next_mistral', 'llava_next_qwen', 'llava_next_yi', 'llava_next_video', 'llava_next_video_mistral', 'llava_next_video_yi', 'mimo',
  'mimo_v2', 'mimo_vl', 'minicpm_v', 'minicpm_v_4_6', 'minicpm_o', 'minimax1', 'minimax2', 'ministral',
  'mistral', 'mistral_small', 'ministral3', 'olmo', 'openchat', 'openchat-3.6', 'opencoder', 'paligemma',
  'paligemma_chat', 'phi', 'phi_small', 'phi4', 'phi4_mini', 'pixtral', 'qwen', 'qwen3',
  'qwen3_nothink', 'qwen2_audio', 'qwen2_omni', 'qwen3_omni', 'qwen3_omni_nothink', 'qwen2_vl', 'qwen3_vl', 'qwen3_vl_nothink',
  'qwen3_5', 'qwen3_5_nothink', 'qwen3_6', 'sailor', 'seed_coder', 'seed_oss', 'smollm', 'smollm2',
  'solar', 'starchat', 'telechat2', 'vicuna', 'video_llava', 'xuanyuan', 'yi', 'yi_vl',
  'youtu', 'youtu_vl', 'yuan', 'zephyr', 'aeva',
]);

/** dataset_info.json: the fields the export may write (data/README.md), and the column / tag names (data/parser.py). */
export const ENTRY_FIELDS = new Set(['file_name', 'formatting', 'ranking', 'columns', 'tags']);
export const COLUMN_NAMES = new Set(['prompt', 'query', 'response', 'history', 'messages', 'system', 'tools', 'images', 'videos', 'audios', 'chosen', 'rejected', 'kto_tag']);
export const TAG_NAMES = new Set(['role_tag', 'content_tag', 'user_tag', 'assistant_tag', 'observation_tag', 'function_tag', 'system_tag']);
