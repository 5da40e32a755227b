/*
 * test_pack_config.c — HF config.json -> em_blob_config (tools/pack/hfconfig.h): the Mamba2 and NemotronH
 * field maps, the encodings of inf that real files hold (bare Infinity from json.dumps, {"__float__":
 * "Infinity"} from transformers 5), both NemotronH pattern spellings, and each rejection with its status and
 * the field named in the message.
 *
 * Run: ctest -R test_pack_config (label blob).
 */
#include <math.h>

#include "hfconfig.h"
#include "test_pack_common.c"

static em_status parse(const char *json, em_hf_config *h) {
    return em_hf_config_parse(json, strlen(json), "cfg.json", h);
}

/* What transformers 5.23 save_pretrained writes for Mamba2Config(hidden 64, 2 layers, ..., n_groups 2). */
static const char *mamba2_json =
    "{\"architectures\": [\"Mamba2ForCausalLM\"], \"bos_token_id\": 0, \"chunk_size\": 256, \"conv_kernel\": 4,\n"
    " \"dtype\": \"float32\", \"eos_token_id\": 2, \"expand\": 2, \"head_dim\": 16, \"hidden_act\": \"silu\",\n"
    " \"hidden_size\": 64, \"initializer_range\": 0.1, \"layer_norm_epsilon\": 1e-05, \"model_type\": \"mamba2\",\n"
    " \"n_groups\": 2, \"num_heads\": 8, \"num_hidden_layers\": 2, \"pad_token_id\": 1, \"residual_in_fp32\": true,\n"
    " \"state_size\": 16, \"tie_word_embeddings\": false, \"time_step_floor\": 0.0001,\n"
    " \"time_step_limit\": [0.0, {\"__float__\": \"Infinity\"}], \"time_step_max\": 0.1, \"time_step_min\": 0.001,\n"
    " \"transformers_version\": \"5.23.0\", \"use_bias\": false, \"use_cache\": true, \"use_conv_bias\": true,\n"
    " \"vocab_size\": 500}";

static void test_mamba2(void) {
    em_hf_config h;
    CHECK_STATUS(parse(mamba2_json, &h), EM_OK);
    const em_blob_config *c = &h.cfg;
    CHECK(h.family == EM_HF_MAMBA2 && c->arch == EM_ARCH_MAMBA2 && !strcmp(h.pattern, "MM"));
    CHECK(c->n_layer == 2 && c->d_model == 64 && c->vocab_size == 500 && c->d_state == 16 && c->d_conv == 4);
    CHECK(c->ssm_n_head == 8 && c->ssm_head_dim == 16 && c->ssm_n_group == 2 && c->d_inner == 128);
    CHECK(c->ssm_chunk == 256 && c->norm_eps == 1e-5f && c->norm_kind == EM_NORM_RMS);
    CHECK(c->gated_norm_group == 64);   /* d_inner / n_groups: transformers 5.x groups the Mamba2 norm */
    CHECK(c->flags == (EM_CFG_CONV_BIAS | EM_CFG_RESIDUAL_FP32));
    CHECK(c->dt_limit_min == 0.0f && isinf(c->dt_limit_max) && c->dt_limit_max > 0);
    CHECK(c->bos_id == 0 && c->eos_id == 2 && c->pad_id == 1 && c->unk_id == -1);
    CHECK(c->attn_n_head == 0 && c->d_ff == 0 && c->mlp_act == EM_ACT_NONE && c->max_context == 0);
    em_blob_config bc = em_hf_blob_config(&h);
    CHECK(bc.layer_pattern.len == 2 && !memcmp(bc.layer_pattern.ptr, "MM", 2) && bc.chat_template.len == 0);

    /* Bare Infinity (json.dumps of transformers 4.x), a finite limit, a list of eos ids, tied, defaults. */
    CHECK_STATUS(parse("{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 1, \"vocab_size\": 9,"
                       " \"state_size\": 16, \"num_heads\": 8, \"head_dim\": 16, \"n_groups\": 1,"
                       " \"time_step_limit\": [0.0, Infinity], \"tie_word_embeddings\": true,"
                       " \"eos_token_id\": [5, 6], \"note\": \"Infinity and NaN in a string\"}", &h), EM_OK);
    CHECK(isinf(h.cfg.dt_limit_max) && (h.cfg.flags & EM_CFG_TIED_EMBEDDINGS) && h.cfg.eos_id == 5);
    CHECK(h.cfg.gated_norm_group == 128 && h.cfg.ssm_chunk == 256 && h.cfg.d_conv == 4 && h.cfg.pad_id == -1);
    CHECK(h.cfg.flags & EM_CFG_RESIDUAL_FP32);   /* HF Mamba2 default */
    CHECK_STATUS(parse("{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 1, \"vocab_size\": 9,"
                       " \"state_size\": 16, \"num_heads\": 8, \"head_dim\": 16, \"n_groups\": 1,"
                       " \"time_step_limit\": [0.001, 0.1], \"residual_in_fp32\": false}", &h), EM_OK);
    CHECK(h.cfg.dt_limit_min == 0.001f && h.cfg.dt_limit_max == 0.1f && !(h.cfg.flags & EM_CFG_RESIDUAL_FP32));
    CHECK_STATUS(parse("{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 1, \"vocab_size\": 9,"
                       " \"state_size\": 16, \"num_heads\": 8, \"head_dim\": 16, \"n_groups\": 1,"
                       " \"time_step_limit\": [0.0, NaN]}", &h), EM_OK);
    CHECK(isinf(h.cfg.dt_limit_max));
    CHECK_STATUS(parse("{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 1, \"vocab_size\": 9,"
                       " \"state_size\": 16, \"num_heads\": 8, \"head_dim\": 16, \"n_groups\": 1,"
                       " \"time_step_limit\": [0.0]}", &h), EM_OK);
    CHECK(isinf(h.cfg.dt_limit_max));
}

static const char *nemotron_json =
    "{\"architectures\": [\"NemotronHForCausalLM\"], \"attention_bias\": false, \"bos_token_id\": 1,\n"
    " \"chunk_size\": 128, \"conv_kernel\": 4, \"eos_token_id\": 2, \"expand\": 2, \"head_dim\": 16,\n"
    " \"hidden_size\": 64, \"intermediate_size\": 128, \"layer_norm_epsilon\": 1e-05,\n"
    " \"layers_block_type\": [\"linear_attention\", \"mlp\", \"linear_attention\", \"full_attention\", \"mlp\"],\n"
    " \"mamba_head_dim\": 16, \"mamba_hidden_act\": \"silu\", \"mamba_num_heads\": 8, \"mamba_proj_bias\": false,\n"
    " \"max_position_embeddings\": 4096, \"mlp_bias\": false, \"mlp_hidden_act\": \"relu2\",\n"
    " \"model_type\": \"nemotron_h\", \"mtp_layers_block_type\": [\"full_attention\", \"moe\"], \"n_group\": 1,\n"
    " \"n_groups\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"pad_token_id\": 0,\n"
    " \"residual_in_fp32\": false, \"ssm_state_size\": 16, \"tie_word_embeddings\": false,\n"
    " \"time_step_limit\": [0.0, {\"__float__\": \"Infinity\"}], \"use_bias\": false, \"use_conv_bias\": true,\n"
    " \"vocab_size\": 500}";

static void test_nemotron(void) {
    em_hf_config h;
    CHECK_STATUS(parse(nemotron_json, &h), EM_OK);
    const em_blob_config *c = &h.cfg;
    CHECK(h.family == EM_HF_NEMOTRON_H && c->arch == EM_ARCH_HYBRID && !strcmp(h.pattern, "M-M*-") && c->n_layer == 5);
    CHECK(c->d_state == 16 && c->ssm_n_head == 8 && c->ssm_head_dim == 16 && c->ssm_n_group == 2 && c->d_inner == 128);
    CHECK(c->gated_norm_group == 64 && c->ssm_chunk == 128 && c->flags == EM_CFG_CONV_BIAS);
    CHECK(c->attn_n_head == 4 && c->attn_n_kv_head == 2 && c->attn_head_dim == 16 && c->rope_fraction == 0.0f);
    CHECK(c->d_ff == 128 && c->mlp_act == EM_ACT_RELU2 && c->max_context == 4096);
    CHECK(c->bos_id == 1 && c->eos_id == 2 && c->pad_id == 0);

    /* Legacy spellings: hybrid_override_pattern, mamba_n_groups, "mamba" strings; all-Mamba -> arch Mamba-2. */
    CHECK_STATUS(parse("{\"model_type\": \"nemotron_h\", \"hidden_size\": 64, \"vocab_size\": 9,"
                       " \"ssm_state_size\": 16,"
                       " \"mamba_num_heads\": 8, \"mamba_head_dim\": 16, \"mamba_n_groups\": 4,"
                       " \"hybrid_override_pattern\": \"MMM\"}", &h), EM_OK);
    CHECK(h.cfg.arch == EM_ARCH_MAMBA2 && !strcmp(h.pattern, "MMM") && h.cfg.ssm_n_group == 4);
    CHECK(h.cfg.gated_norm_group == 32 && h.cfg.attn_n_head == 0 && h.cfg.d_ff == 0);
    CHECK_STATUS(parse("{\"model_type\": \"nemotron_h\", \"hidden_size\": 64, \"vocab_size\": 9,"
                       " \"ssm_state_size\": 16,"
                       " \"mamba_num_heads\": 8, \"mamba_head_dim\": 16, \"n_groups\": 8, \"num_attention_heads\": 4,"
                       " \"num_key_value_heads\": 4, \"head_dim\": 16, \"intermediate_size\": 32,"
                       " \"mlp_hidden_act\": \"gelu\","
                       " \"layers_block_type\": [\"mamba\", \"attention\", \"mlp\"]}", &h),
                 EM_OK);
    CHECK(!strcmp(h.pattern, "M*-") && h.cfg.mlp_act == EM_ACT_GELU && h.cfg.gated_norm_group == 16);
    /* NemotronH sizes Mamba from heads * head_dim; expand may disagree (Nemotron-Nano-9B-v2) */
    CHECK_STATUS(parse("{\"model_type\": \"nemotron_h\", \"hidden_size\": 48, \"vocab_size\": 9,"
                       " \"ssm_state_size\": 16,"
                       " \"mamba_num_heads\": 8, \"mamba_head_dim\": 16, \"n_groups\": 2, \"expand\": 2,"
                       " \"hybrid_override_pattern\": \"M\"}", &h), EM_OK);
    CHECK(h.cfg.d_inner == 128);
}

typedef struct reject { const char *what, *json; em_status want; const char *msg; } reject;

/* cJSON returns the first of two equal keys: a case overriding a field uses M2_BASE and sets it itself. */
#define M2_BASE "\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": 9, " \
                "\"state_size\": 16, \"num_heads\": 8, \"head_dim\": 16"
#define M2 M2_BASE ", \"n_groups\": 2"
#define NH "\"model_type\": \"nemotron_h\", \"hidden_size\": 64, \"vocab_size\": 9, \"ssm_state_size\": 16, " \
           "\"mamba_num_heads\": 8, \"mamba_head_dim\": 16, \"n_groups\": 2"

static const reject rejects[] = {
    {"not JSON", "{\"model_type\": ", EM_ERR_FORMAT, "not a JSON object"},
    {"no model_type", "{\"hidden_size\": 3}", EM_ERR_FORMAT, "model_type"},
    {"other model", "{\"model_type\": \"llama\"}", EM_ERR_UNSUPPORTED, "\"llama\""},
    {"missing hidden_size", "{\"model_type\": \"mamba2\", \"num_hidden_layers\": 2}", EM_ERR_FORMAT, "\"hidden_size\""},
    {"dim not integer", "{" M2 ", \"conv_kernel\": 3.5}", EM_ERR_FORMAT, "\"conv_kernel\""},
    {"dim zero", "{\"model_type\": \"mamba2\", \"hidden_size\": 0}", EM_ERR_FORMAT, "\"hidden_size\""},
    {"dim a string", "{" M2_BASE ", \"n_groups\": \"2\"}", EM_ERR_FORMAT, "\"n_groups\""},
    {"use_bias", "{" M2 ", \"use_bias\": true}", EM_ERR_UNSUPPORTED, "use_bias"},
    {"expand mismatch", "{" M2 ", \"expand\": 3}", EM_ERR_FORMAT, "expand 3 * hidden_size 64"},
    {"groups do not divide heads", "{" M2_BASE ", \"n_groups\": 3}", EM_ERR_FORMAT, "n_groups 3"},
    {"bad eps", "{" M2 ", \"layer_norm_epsilon\": 0}", EM_ERR_FORMAT, "layer_norm_epsilon"},
    {"bad dt limit", "{" M2 ", \"time_step_limit\": [0.5, 0.1]}", EM_ERR_FORMAT, "time_step_limit"},
    {"mixer act", "{" M2 ", \"hidden_act\": \"gelu\"}", EM_ERR_UNSUPPORTED, "\"gelu\""},
    {"bool as int", "{" M2 ", \"tie_word_embeddings\": 1}", EM_ERR_FORMAT, "tie_word_embeddings"},
    {"too many layers", "{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 5000, "
     "\"vocab_size\": 9}", EM_ERR_FORMAT, "num_hidden_layers"},
    {"no pattern", "{" NH "}", EM_ERR_FORMAT, "layers_block_type"},
    {"moe layer", "{" NH ", \"layers_block_type\": [\"mamba\", \"moe\"]}", EM_ERR_UNSUPPORTED, "layer 1"},
    {"E in pattern", "{" NH ", \"hybrid_override_pattern\": \"ME\"}", EM_ERR_UNSUPPORTED, "layer 1"},
    {"unknown layer", "{" NH ", \"layers_block_type\": [\"conv\"]}", EM_ERR_FORMAT, "\"conv\""},
    {"bad pattern char", "{" NH ", \"hybrid_override_pattern\": \"M?\"}", EM_ERR_FORMAT, "'?'"},
    {"empty pattern", "{" NH ", \"hybrid_override_pattern\": \"\"}", EM_ERR_FORMAT, "empty"},
    {"mlp act", "{" NH ", \"hybrid_override_pattern\": \"M-\", \"intermediate_size\": 8, \"mlp_hidden_act\": "
     "\"tanh\"}", EM_ERR_UNSUPPORTED, "\"tanh\""},
    {"mlp bias", "{" NH ", \"hybrid_override_pattern\": \"M-\", \"intermediate_size\": 8, \"mlp_bias\": true}",
     EM_ERR_UNSUPPORTED, "mlp_bias"},
    {"no intermediate_size", "{" NH ", \"hybrid_override_pattern\": \"M-\"}", EM_ERR_FORMAT, "intermediate_size"},
    {"gqa mismatch", "{" NH ", \"hybrid_override_pattern\": \"M*\", \"num_attention_heads\": 4, "
     "\"num_key_value_heads\": 3}", EM_ERR_FORMAT, "num_key_value_heads 3"},
    {"bad token id", "{" M2 ", \"eos_token_id\": -4}", EM_ERR_FORMAT, "eos_token_id"},
};

static void test_rejects(void) {
    for (size_t i = 0; i < sizeof rejects / sizeof rejects[0]; i++) {
        const reject *r = &rejects[i];
        em_hf_config h;
        em_status s = parse(r->json, &h);
        CHECK_MSG(s == r->want, "case '%s': %s, want %s (%s)", r->what, em_status_str(s), em_status_str(r->want),
                  em_last_error());
        CHECK_MSG(strstr(em_last_error(), "cfg.json") && strstr(em_last_error(), r->msg),
                  "case '%s': message \"%s\" lacks \"%s\"", r->what, em_last_error(), r->msg);
    }
}

/* em_hf_config_load: the model name is the directory's name; a missing file is EM_ERR_NOT_FOUND. */
static void test_load(void) {
    char dir[4096], p[4200];
    tp_mkdtemp(dir, sizeof dir, "cfg");
    tp_write_text(dir, "config.json", mamba2_json);
    tp_fmt(p, "%s/config.json", dir);
    em_hf_config h;
    CHECK_STATUS(em_hf_config_load(p, &h), EM_OK);
    const char *base = strrchr(dir, '/') + 1;
    CHECK_MSG(!strcmp(h.name, base), "name %s, want %s", h.name, base);
    tp_rm_rf(dir);
    CHECK_STATUS(em_hf_config_load(p, &h), EM_ERR_NOT_FOUND);
}

int main(void) {
    test_mamba2();
    test_nemotron();
    test_rejects();
    test_load();
    return em_test_finish("test_pack_config");
}
