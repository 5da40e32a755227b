# em-pack on Megatron-LM checkpoints (tools/pack/megatron.[ch]): a tiny hybrid state dict with Megatron names
# and megatron_args.json written from C (no Python at test time). Label "blob".
if(TARGET em_packlib)
  em_add_test(NAME test_pack_megatron SOURCES test_pack_megatron.c LABELS blob LIBS em_packlib)
endif()
