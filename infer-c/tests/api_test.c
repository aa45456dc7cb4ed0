/*
 * The C API on the host, built with the system cc (under AddressSanitizer and UBSan in
 * the tests) and linked with libfmlp.a: every function and every status code, hostile
 * arguments with guard bytes around every buffer, and agreement with the trainer.
 *
 *   api_test IMAGE.int8.fmlp IMAGE.f32.fmlp IMAGES.bin INT8.classes F32.classes \
 *            FEATURES.bin TABLE.classes
 *
 * IMAGE.*: a model of bytes (Fashion-MNIST), read from files; IMAGES.bin: test images,
 * `inputs` bytes each; *.classes: one byte per example, the trainer's predicted class
 * (int8 reference, f32 model). The table model is compiled in: `trainer export --c-header
 * --c-name table` wrote table_model.h/.c, which take real-valued features (FEATURES.bin:
 * little-endian floats). Prints one line per check; exits 1 on the first failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmlp.h"
#include "table_model.h"

static int checks = 0;

#define CHECK(cond, ...)                                   \
    do {                                                   \
        checks++;                                          \
        if (!(cond)) {                                     \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fprintf(stderr, "\n");                         \
            exit(1);                                       \
        }                                                  \
    } while (0)

#define EXPECT(call, code) \
    do { int32_t got_ = (call); CHECK(got_ == (code), "%s: %s, expected %s", #call, fmlp_status_name(got_), fmlp_status_name(code)); } while (0)

/* A buffer of `len` bytes between two guards of GUARD bytes that no call may touch. */
enum { GUARD = 64 };
typedef struct {
    uint8_t *raw;
    uint8_t *data;
    size_t len;
} guarded;

static guarded guarded_new(size_t len, size_t offset) {
    guarded g;
    g.raw = malloc(len + 2 * GUARD + 16);
    CHECK(g.raw != NULL, "malloc");
    memset(g.raw, 0xA5, len + 2 * GUARD + 16);
    g.data = g.raw + GUARD + offset;
    g.len = len;
    return g;
}

static void guarded_check(const guarded *g, const char *what) {
    for (uint8_t *p = g->raw; p < g->data; p++) CHECK(*p == 0xA5, "%s: a byte before the buffer was written", what);
    for (uint8_t *p = g->data + g->len; p < g->data + g->len + GUARD; p++)
        CHECK(*p == 0xA5, "%s: a byte after the buffer was written", what);
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* 8-byte aligned, as a model in flash would be (malloc aligns to 16). */
    uint8_t *bytes = malloc(n > 0 ? (size_t)n : 1);
    CHECK(bytes != NULL && fread(bytes, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    fclose(f);
    *len = (size_t)n;
    return bytes;
}

/* Every status code has its own name; an unknown one has a name too. */
static void status_names(void) {
    const int32_t codes[] = {FMLP_OK, FMLP_ERR_NULL, FMLP_ERR_HANDLE, FMLP_ERR_ALIGNMENT, FMLP_ERR_OVERLAP,
                             FMLP_ERR_TRUNCATED, FMLP_ERR_BAD_MAGIC, FMLP_ERR_VERSION, FMLP_ERR_CHECKSUM,
                             FMLP_ERR_MODEL, FMLP_ERR_QUANT, FMLP_ERR_INPUT_SIZE, FMLP_ERR_OUTPUT_SIZE,
                             FMLP_ERR_SCRATCH_SIZE, FMLP_ERR_NO_QUANTIZER, FMLP_ERR_CLASS, FMLP_ERR_NO_NAMES,
                             FMLP_ERR_BUFFER};
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *name = fmlp_status_name(codes[i]);
        CHECK(name != NULL && strncmp(name, "FMLP_", 5) == 0, "status %d has no name", (int)codes[i]);
        for (size_t j = 0; j < i; j++) CHECK(strcmp(name, fmlp_status_name(codes[j])) != 0, "two codes, one name");
    }
    CHECK(strcmp(fmlp_status_name(12345), "unknown fmlp status") == 0, "an unknown code");
    printf("ok: %zu status codes named\n", n);
}

/* Opening: corrupt, short and foreign bytes, null and misaligned pointers, overlap. */
static void hostile_open(const uint8_t *bytes, size_t len) {
    fmlp_model model;
    EXPECT(fmlp_open(NULL, bytes, len), FMLP_ERR_NULL);
    EXPECT(fmlp_open(&model, NULL, len), FMLP_ERR_NULL);
    EXPECT(fmlp_open(&model, bytes, 0), FMLP_ERR_TRUNCATED);
    EXPECT(fmlp_open(&model, bytes, len - 1), FMLP_ERR_TRUNCATED);
    uint8_t *copy = malloc(len + 1);
    CHECK(copy != NULL, "malloc");
    memcpy(copy, bytes, len);
    copy[len] = 0;
    EXPECT(fmlp_open(&model, copy, len + 1), FMLP_ERR_MODEL);
    copy[0] ^= 0xff;
    EXPECT(fmlp_open(&model, copy, len), FMLP_ERR_BAD_MAGIC);
    copy[0] ^= 0xff;
    copy[4] = 99; /* the format version */
    EXPECT(fmlp_open(&model, copy, len), FMLP_ERR_VERSION);
    memcpy(copy, bytes, len);
    copy[len / 2] ^= 0x10;
    EXPECT(fmlp_open(&model, copy, len), FMLP_ERR_CHECKSUM);
    /* Every single-byte change of the first 64 bytes (the header) is refused or harmless. */
    for (size_t i = 0; i < 64 && i < len; i++) {
        memcpy(copy, bytes, len);
        copy[i] ^= 0x5a;
        int32_t got = fmlp_open(&model, copy, len);
        CHECK(got < 0, "byte %zu changed, still opened", i);
    }
    free(copy);
    /* A failed open leaves the handle unusable. */
    fmlp_info info;
    EXPECT(fmlp_get_info(&model, &info), FMLP_ERR_HANDLE);
    /* A handle never opened, and one that is misaligned. */
    fmlp_model zeroed;
    memset(&zeroed, 0, sizeof zeroed);
    EXPECT(fmlp_get_info(&zeroed, &info), FMLP_ERR_HANDLE);
    guarded h = guarded_new(sizeof(fmlp_model) + 8, 0);
    EXPECT(fmlp_open((fmlp_model *)(h.data + 4), bytes, len), FMLP_ERR_ALIGNMENT);
    guarded_check(&h, "misaligned handle");
    free(h.raw);
    /* A handle inside the model's own bytes. */
    uint8_t *inside = malloc(len + sizeof(fmlp_model) + 8);
    CHECK(inside != NULL, "malloc");
    memcpy(inside, bytes, len);
    EXPECT(fmlp_open((fmlp_model *)inside, inside, len), FMLP_ERR_OVERLAP);
    free(inside);
    printf("ok: hostile opens refused\n");
}

/* Every prediction call with each argument wrong in turn, on an opened model of bytes. */
static void hostile_predict(const fmlp_model *model, const fmlp_info *info, const uint8_t *image) {
    guarded scratch = guarded_new(info->scratch_bytes, 0);
    guarded scores = guarded_new(4 * info->classes, 0);
    guarded text = guarded_new(8, 0);
    int32_t *s = (int32_t *)scores.data;
    uint16_t cls = 0xffff;
    const size_t n = info->inputs, sb = info->scratch_bytes, k = info->classes;
    EXPECT(fmlp_predict(NULL, image, n, scratch.data, sb, s, k, &cls), FMLP_ERR_NULL);
    EXPECT(fmlp_predict(model, NULL, n, scratch.data, sb, s, k, &cls), FMLP_ERR_NULL);
    EXPECT(fmlp_predict(model, image, n, NULL, sb, s, k, &cls), FMLP_ERR_NULL);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, NULL, k, &cls), FMLP_ERR_NULL);
    EXPECT(fmlp_predict(model, image, n - 1, scratch.data, sb, s, k, &cls), FMLP_ERR_INPUT_SIZE);
    EXPECT(fmlp_predict(model, image, n + 1, scratch.data, sb, s, k, &cls), FMLP_ERR_INPUT_SIZE);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb - 1, s, k, &cls), FMLP_ERR_SCRATCH_SIZE);
    EXPECT(fmlp_predict(model, image, n, scratch.data, 0, s, k, &cls), FMLP_ERR_SCRATCH_SIZE);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, s, k - 1, &cls), FMLP_ERR_OUTPUT_SIZE);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, s, 0, &cls), FMLP_ERR_OUTPUT_SIZE);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, (int32_t *)(scores.data + 1), k - 1, &cls),
           FMLP_ERR_ALIGNMENT);
    guarded odd = guarded_new(sb + 1, 0);
    EXPECT(fmlp_predict(model, image, n, odd.data + 1, sb, s, k, &cls), FMLP_ERR_ALIGNMENT);
    guarded_check(&odd, "odd scratch");
    free(odd.raw);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, s, k, (uint16_t *)(text.data + 1)), FMLP_ERR_ALIGNMENT);
    /* Overlaps: scores in the scratch, the class in the scores, the scratch over the input. */
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, (int32_t *)scratch.data, k, &cls), FMLP_ERR_OVERLAP);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, s, k, (uint16_t *)(s + 1)), FMLP_ERR_OVERLAP);
    uint8_t *both = malloc(n + sb + 8);
    CHECK(both != NULL, "malloc");
    memcpy(both, image, n);
    EXPECT(fmlp_predict(model, both, n, both + (n & ~(size_t)3) - 4, sb, s, k, &cls), FMLP_ERR_OVERLAP);
    free(both);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, s, k, (uint16_t *)model), FMLP_ERR_OVERLAP);
    CHECK(cls == 0xffff, "a refused call wrote the class");
    /* The wrong kind of call for this model. */
    float features[4096];
    memset(features, 0, sizeof features);
    EXPECT(fmlp_predict_features(model, features, n, scratch.data, sb, s, k, &cls), FMLP_ERR_NO_QUANTIZER);
    EXPECT(fmlp_predict_f32(model, features, n, scratch.data, sb, (float *)s, k, &cls), FMLP_ERR_QUANT);
    /* Class names: a short buffer, an index past the classes. */
    EXPECT(fmlp_class_name(model, 0, (char *)text.data, 1), FMLP_ERR_BUFFER);
    EXPECT(fmlp_class_name(model, k, (char *)text.data, text.len), FMLP_ERR_CLASS);
    EXPECT(fmlp_class_name(model, 0, NULL, 8), FMLP_ERR_NULL);
    EXPECT(fmlp_get_info(model, NULL), FMLP_ERR_NULL);
    /* And a good call still works, with the class optional. */
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, s, k, NULL), FMLP_OK);
    EXPECT(fmlp_predict(model, image, n, scratch.data, sb, s, k, &cls), FMLP_OK);
    CHECK(cls < k, "class %u", cls);
    guarded_check(&scratch, "scratch");
    guarded_check(&scores, "scores");
    guarded_check(&text, "text");
    free(scratch.raw);
    free(scores.raw);
    free(text.raw);
    printf("ok: hostile predictions refused, nothing written outside the buffers\n");
}

/* The classes of every example agree with the trainer's; returns the disagreements. */
static size_t agreement_bytes(const fmlp_model *model, const fmlp_info *info, const uint8_t *inputs, size_t count,
                              const uint8_t *expected) {
    guarded scratch = guarded_new(info->scratch_bytes, 0);
    guarded scores = guarded_new(4 * info->classes, 0);
    size_t differ = 0;
    for (size_t i = 0; i < count; i++) {
        uint16_t cls;
        EXPECT(fmlp_predict(model, inputs + i * info->inputs, info->inputs, scratch.data, scratch.len,
                            (int32_t *)scores.data, info->classes, &cls),
               FMLP_OK);
        differ += cls != expected[i];
    }
    guarded_check(&scratch, "scratch");
    guarded_check(&scores, "scores");
    free(scratch.raw);
    free(scores.raw);
    return differ;
}

int main(int argc, char **argv) {
    CHECK(argc == 8, "usage: api_test IMAGE.int8.fmlp IMAGE.f32.fmlp IMAGES.bin INT8.classes F32.classes "
                     "FEATURES.bin TABLE.classes");
    CHECK(sizeof(fmlp_model) == FMLP_MODEL_BYTES && _Alignof(fmlp_model) == 8, "the handle's size and alignment");
    status_names();

    size_t len, f32_len, images_len, int8_len, f32c_len, features_len, table_len;
    uint8_t *bytes = read_file(argv[1], &len);
    uint8_t *f32_bytes = read_file(argv[2], &f32_len);
    uint8_t *images = read_file(argv[3], &images_len);
    uint8_t *int8_classes = read_file(argv[4], &int8_len);
    uint8_t *f32_classes = read_file(argv[5], &f32c_len);
    uint8_t *features = read_file(argv[6], &features_len);
    uint8_t *table_classes = read_file(argv[7], &table_len);
    hostile_open(bytes, len);

    /* The int8 model of bytes. */
    fmlp_model model;
    fmlp_info info;
    EXPECT(fmlp_open(&model, bytes, len), FMLP_OK);
    EXPECT(fmlp_get_info(&model, &info), FMLP_OK);
    CHECK(info.quant == FMLP_QUANT_INT8 && info.has_input_quantizer == 0 && info.has_class_names == 1, "int8 info");
    CHECK(info.widths[0] == info.inputs && info.widths[info.layers] == info.classes, "widths");
    CHECK(info.layers + 1 == FMLP_MAX_WIDTHS || info.widths[info.layers + 1] == 0, "widths end with 0");
    char name[64];
    EXPECT(fmlp_class_name(&model, 0, name, sizeof name), FMLP_OK);
    CHECK(strcmp(name, "T-shirt/top") == 0, "class 0 is %s", name);
    size_t count = images_len / info.inputs;
    CHECK(count == int8_len && count == f32c_len && count > 0, "%zu images, %zu and %zu classes", count, int8_len, f32c_len);
    hostile_predict(&model, &info, images);
    /* A copy of the handle works as the original does. */
    fmlp_model copy;
    memcpy(&copy, &model, sizeof model);
    size_t differ = agreement_bytes(&copy, &info, images, count, int8_classes);
    printf("int8 %s: %zu of %zu images agree with the trainer's integer reference\n", argv[1], count - differ, count);
    CHECK(differ == 0, "%zu images disagree", differ);

    /* The f32 model: pixels scaled to 0..1. */
    fmlp_model f32_model;
    fmlp_info f32_info;
    EXPECT(fmlp_open(&f32_model, f32_bytes, f32_len), FMLP_OK);
    EXPECT(fmlp_get_info(&f32_model, &f32_info), FMLP_OK);
    CHECK(f32_info.quant == FMLP_QUANT_F32 && f32_info.score_scale == 1.0f, "f32 info");
    float *pixels = malloc(sizeof(float) * f32_info.inputs);
    float *f32_scratch = malloc(f32_info.scratch_bytes);
    float logits[1024];
    CHECK(pixels != NULL && f32_scratch != NULL, "malloc");
    int32_t int8_scores[1024];
    EXPECT(fmlp_predict(&f32_model, images, info.inputs, f32_scratch, f32_info.scratch_bytes, int8_scores, 1024, NULL),
           FMLP_ERR_QUANT);
    EXPECT(fmlp_predict_f32(&f32_model, pixels, f32_info.inputs, f32_scratch, f32_info.scratch_bytes - 4, logits,
                            1024, NULL),
           FMLP_ERR_SCRATCH_SIZE);
    EXPECT(fmlp_predict_f32(&f32_model, pixels, f32_info.inputs, (uint8_t *)f32_scratch + 2, f32_info.scratch_bytes,
                            logits, 1024, NULL),
           FMLP_ERR_ALIGNMENT);
    size_t f32_differ = 0;
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < f32_info.inputs; j++) pixels[j] = images[i * f32_info.inputs + j] / 255.0f;
        uint16_t cls;
        EXPECT(fmlp_predict_f32(&f32_model, pixels, f32_info.inputs, f32_scratch, f32_info.scratch_bytes, logits,
                                f32_info.classes, &cls),
               FMLP_OK);
        f32_differ += cls != f32_classes[i];
    }
    printf("f32 %s: %zu of %zu images agree with the trainer's f32 predictions\n", argv[2], count - f32_differ, count);
    /* Sums in another order can flip a near tie; more than 1 in 200 would be a bug. */
    CHECK(f32_differ * 200 <= count, "%zu images disagree", f32_differ);
    free(pixels);
    free(f32_scratch);

    /* The compiled-in table model: features through its input quantizer. */
    fmlp_model table;
    fmlp_info table_info;
    EXPECT(fmlp_open(&table, table_model, TABLE_MODEL_BYTES), FMLP_OK);
    EXPECT(fmlp_get_info(&table, &table_info), FMLP_OK);
    CHECK(table_info.inputs == TABLE_INPUTS && table_info.classes == TABLE_CLASSES, "the generated header's sizes");
    CHECK(table_info.scratch_bytes == TABLE_SCRATCH_BYTES && TABLE_HAS_INPUT_QUANTIZER == 1, "scratch, quantizer");
    CHECK(((uintptr_t)table_model & 63) == 0, "the generated array is 64-byte aligned");
    for (size_t c = 0; c < TABLE_CLASSES; c++) {
        EXPECT(fmlp_class_name(&table, c, name, sizeof name), FMLP_OK);
        CHECK(strcmp(name, table_class_names[c]) == 0, "class %zu: %s and %s", c, name, table_class_names[c]);
    }
    size_t rows = features_len / (4 * TABLE_INPUTS);
    CHECK(rows == table_len && rows > 0, "%zu rows, %zu classes", rows, table_len);
    guarded scratch = guarded_new(TABLE_SCRATCH_BYTES, 0);
    int32_t scores[TABLE_CLASSES];
    size_t table_differ = 0;
    EXPECT(fmlp_predict(&table, (const uint8_t *)features, TABLE_INPUTS, scratch.data, scratch.len, scores,
                        TABLE_CLASSES, NULL),
           FMLP_OK); /* bytes are allowed too: the quantized input itself */
    for (size_t i = 0; i < rows; i++) {
        float row[TABLE_INPUTS];
        memcpy(row, features + 4 * TABLE_INPUTS * i, sizeof row);
        uint16_t cls;
        EXPECT(fmlp_predict_features(&table, row, TABLE_INPUTS, scratch.data, scratch.len, scores, TABLE_CLASSES, &cls),
               FMLP_OK);
        table_differ += cls != table_classes[i];
    }
    guarded_check(&scratch, "table scratch");
    free(scratch.raw);
    printf("table (compiled in): %zu of %zu rows agree with the trainer's integer reference\n", rows - table_differ, rows);
    CHECK(table_differ == 0, "%zu rows disagree", table_differ);

    free(bytes);
    free(f32_bytes);
    free(images);
    free(int8_classes);
    free(f32_classes);
    free(features);
    free(table_classes);
    printf("all %d checks passed\n", checks);
    return 0;
}
