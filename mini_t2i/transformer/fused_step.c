/* A Llama stack's forward over new positions in one call: fp16 weights and KV cache, fp32
 * activations and sums. fused.py builds it; decoder.FusedLlama calls it for
 * decode_weights="fused".
 *
 * A decode step at 1-16 rows reads every weight once; torch spends as long again on the ~15
 * small ops a layer around its matmuls (norms, RoPE, cache writes, attention of one query,
 * SwiGLU: docs/speed.md). Here the whole step is one pass of plain loops:
 *
 *   x (R, T, d) -> per layer: rmsnorm -> q|k|v = W_qkv x -> RoPE -> k, v into the cache
 *                  -> softmax(q k^T / sqrt(D)) v over positions 0..p -> x += W_o a
 *                  -> rmsnorm -> g|u = W_gu x -> x += W_down (silu(g) * u)
 *               -> final rmsnorm of each row's last position -> out (R, d)
 *
 * Built with the host compiler (-O3 -march=native); it needs AVX2, F16C and FMA. Every
 * (output, row) dot product runs the same sequence of FMAs over the input whatever the number
 * of rows or how they are grouped, so a row's result does not depend on its batch-mates, bit
 * for bit (seeds draw the same image at any batch size), and a position gives the same result
 * in a prefill as alone. Threads split the outputs of each matmul and the (row, head) pairs of
 * attention, never a sum, so the results are the same at any thread count.
 */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct {
    int32_t layers, hidden, heads, head_dim, mlp, max_batch, max_len;
    float eps;
    const float *const *norm1;       /* [layers] -> (hidden,) */
    const uint16_t *const *qkv;      /* [layers] -> (3 hidden, hidden) fp16 */
    const uint16_t *const *o;        /* [layers] -> (hidden, hidden) */
    const float *const *norm2;       /* [layers] -> (hidden,) */
    const uint16_t *const *gate_up;  /* [layers] -> (2 mlp, hidden), gate rows first */
    const uint16_t *const *down;     /* [layers] -> (hidden, mlp) */
    const float *norm;               /* (hidden,) the final norm */
    uint16_t *keys, *values;         /* (layers, max_batch, heads, max_len, head_dim) fp16 */
    const float *cos, *sin;          /* (max_len, head_dim) RoPE tables */
} Stack;

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The GEMV's vectors: 16 lanes where the CPU has AVX-512 (its tiles read 4 x 16 halves a step,
 * one convert per 16 weights), else 8. WIDTH is the packed layout's chunk (chunk_width()). */
#ifdef __AVX512F__
#define WIDTH 16
typedef __m512 vec;
#define vzero _mm512_setzero_ps
#define vload _mm512_loadu_ps
#define vfma _mm512_fmadd_ps
#define vload_f16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define vsum _mm512_reduce_add_ps
#else
#define WIDTH 8
typedef __m256 vec;
#define vzero _mm256_setzero_ps
#define vload _mm256_loadu_ps
#define vfma _mm256_fmadd_ps
#define vload_f16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define vsum hsum8
#endif

int chunk_width(void) { return WIDTH; }

/* y[r * ys + a] = sum_i w_a[i] x[r * k + i] for NO outputs a and R rows r, k % WIDTH == 0,
 * where w_a's inputs i..i+WIDTH-1 are the halves at w + (i / WIDTH) * cs + a * as (the packed
 * layout below). NO x R accumulators, one per (output, row): the weights are read once for
 * all R rows. */
#define TILE(NO, R)                                                                            \
    static void tile_##NO##_##R(const uint16_t *w, size_t cs, size_t as, int k, const float *x, \
                                float *y, int ys) {                                            \
        vec acc[NO][R];                                                                        \
        for (int a = 0; a < NO; a++)                                                           \
            for (int r = 0; r < R; r++) acc[a][r] = vzero();                                   \
        for (int i = 0; i < k; i += WIDTH, w += cs) {                                          \
            vec xv[R];                                                                         \
            for (int r = 0; r < R; r++) xv[r] = vload(x + (size_t)r * k + i);                  \
            for (int a = 0; a < NO; a++) {                                                     \
                vec wv = vload_f16(w + a * as);                                                \
                for (int r = 0; r < R; r++) acc[a][r] = vfma(wv, xv[r], acc[a][r]);            \
            }                                                                                  \
        }                                                                                      \
        for (int a = 0; a < NO; a++)                                                           \
            for (int r = 0; r < R; r++) y[(size_t)r * ys + a] = vsum(acc[a][r]);               \
    }
TILE(4, 1) TILE(4, 2) TILE(2, 3) TILE(2, 4) TILE(1, 1) TILE(1, 2) TILE(1, 3) TILE(1, 4)

/* The packed layout (fused.py's pack_f16): outputs in tiles of 4, each tile's inputs in chunks
 * of WIDTH with the 4 outputs' chunks side by side, (n / 4, k / WIDTH, 4, WIDTH), so a tile is
 * one contiguous run read front to back; the n % 4 last outputs follow as plain rows of k. */
static void tile4(const uint16_t *t, int k, const float *x, int R, float *y, int n) {
    const size_t cs = 4 * WIDTH, as = WIDTH;
    switch (R) {
        case 1: tile_4_1(t, cs, as, k, x, y, n); return;
        case 2: tile_4_2(t, cs, as, k, x, y, n); return;
        case 3: tile_2_3(t, cs, as, k, x, y, n); tile_2_3(t + 2 * WIDTH, cs, as, k, x, y + 2, n); return;
        default: tile_2_4(t, cs, as, k, x, y, n); tile_2_4(t + 2 * WIDTH, cs, as, k, x, y + 2, n); return;
    }
}

static void row1(const uint16_t *w, int k, const float *x, int R, float *y, int n) {
    switch (R) {
        case 1: tile_1_1(w, WIDTH, 0, k, x, y, n); return;
        case 2: tile_1_2(w, WIDTH, 0, k, x, y, n); return;
        case 3: tile_1_3(w, WIDTH, 0, k, x, y, n); return;
        default: tile_1_4(w, WIDTH, 0, k, x, y, n); return;
    }
}

/* A pool of worker threads for `parallel`, started on first use and kept. Between jobs a
 * worker spins for SPIN_NS (the gaps inside one forward are shorter), then sleeps on a
 * condition variable, so that it does not hold a core while torch runs between calls. */
#define MAX_THREADS 64
#define SPIN_NS 50000
typedef void (*job_fn)(void *arg, int part, int parts);
static pthread_t pool[MAX_THREADS];
static int pool_size;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER, pool_owner = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static atomic_int job_generation, job_done;
static job_fn job;
static void *job_arg;
static int job_parts;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *worker(void *index) {
    int me = (int)(intptr_t)index, seen = 0;
    for (;;) {
        long long since = now_ns();
        for (int spins = 0; atomic_load(&job_generation) == seen; spins++) {
            _mm_pause();
            if ((spins & 255) == 255 && now_ns() - since > SPIN_NS) {
                pthread_mutex_lock(&pool_lock);
                while (atomic_load(&job_generation) == seen) pthread_cond_wait(&pool_wake, &pool_lock);
                pthread_mutex_unlock(&pool_lock);
            }
        }
        seen = atomic_load(&job_generation);
        if (me < job_parts) job(job_arg, me, job_parts);
        atomic_fetch_add(&job_done, 1);
    }
    return NULL;
}

/* A child of fork() has none of the workers: it starts its own pool when it needs one. */
static void forget_pool(void) {
    pool_size = 0;
    pthread_mutex_init(&pool_lock, NULL);
    pthread_mutex_init(&pool_owner, NULL);
    pthread_cond_init(&pool_wake, NULL);
}

/* fn(arg, part, parts) for part 0..parts-1, part 0 on this thread; returns when all are done.
 * The pool serves one caller at a time: another caller meanwhile (two Python threads decoding)
 * runs its parts one after another itself, with the same results. */
static void parallel(job_fn fn, void *arg, int parts) {
    if (parts > MAX_THREADS) parts = MAX_THREADS;
    if (parts <= 1) {
        fn(arg, 0, 1);
        return;
    }
    if (pthread_mutex_trylock(&pool_owner)) {
        for (int part = 0; part < parts; part++) fn(arg, part, parts);
        return;
    }
    static int registered;
    if (!registered) registered = !pthread_atfork(NULL, NULL, forget_pool);
    for (; pool_size < parts - 1; pool_size++)
        if (pthread_create(&pool[pool_size], NULL, worker, (void *)(intptr_t)(pool_size + 1))) break;
    if (parts > pool_size + 1) parts = pool_size + 1;  /* fewer threads if the system refused more */
    job = fn, job_arg = arg, job_parts = parts;
    atomic_store(&job_done, 0);
    pthread_mutex_lock(&pool_lock);
    atomic_fetch_add(&job_generation, 1);
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_lock);
    fn(arg, 0, parts);
    while (atomic_load(&job_done) < pool_size) _mm_pause();
    pthread_mutex_unlock(&pool_owner);
}

typedef struct {
    const uint16_t *w;
    int n, k, rows;
    const float *x;
    float *y;
} Gemv;

static void gemv_part(void *arg, int part, int parts) {
    const Gemv *g = arg;
    int tiles = g->n / 4, first = (int)((long long)tiles * part / parts), last = (int)((long long)tiles * (part + 1) / parts);
    for (int t = first; t < last; t++)
        for (int r = 0; r < g->rows; r += 4)
            tile4(g->w + (size_t)t * 4 * g->k, g->k, g->x + (size_t)r * g->k, g->rows - r < 4 ? g->rows - r : 4,
                  g->y + (size_t)r * g->n + 4 * t, g->n);
    if (part == parts - 1)
        for (int o = 4 * tiles; o < g->n; o++)
            for (int r = 0; r < g->rows; r += 4)
                row1(g->w + (size_t)o * g->k, g->k, g->x + (size_t)r * g->k, g->rows - r < 4 ? g->rows - r : 4,
                     g->y + (size_t)r * g->n + o, g->n);
}

/* y (rows, n) = x (rows, k) w^T for w (n, k) fp16 in the packed layout, k % WIDTH == 0, on
 * `threads` threads (each a range of tiles). Tiles outermost: a tile's weights (4 x k halves)
 * stay in L1 while every group of 4 rows reads them, so the matrix streams from memory once
 * whatever the number of rows. */
void gemv_f16(const uint16_t *w, int n, int k, const float *x, int rows, float *y, int threads) {
    Gemv g = {w, n, k, rows, x, y};
    parallel(gemv_part, &g, n / 4 >= threads ? threads : 1);
}

/* sum_i a[i] b[i], n % 8 == 0, in a fixed order. */
static inline float dot8(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return hsum8(acc);
}

/* e^x for 8 lanes: x = n ln2 + r, |r| <= ln2 / 2, e^r by Cephes' degree-6 polynomial (relative
 * error ~1e-7, as expf), times 2^n through the exponent bits; x clamped to [-87.3, 88.3]. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

static void rmsnorm(const float *x, const float *weight, int d, float eps, float *y) {
    float ss = dot8(x, x, d);
    float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int i = 0; i < d; i++) y[i] = weight[i] * (x[i] * inv);
}

/* x (D,) rotated in place as Llama's rotate_half: x * cos + [-x2, x1] * sin. */
static void rope(float *x, const float *cos, const float *sin, int dim) {
    int half = dim / 2;
    for (int j = 0; j < half; j++) {
        float a = x[j], b = x[j + half];
        x[j] = a * cos[j] - b * sin[j];
        x[j + half] = b * cos[j + half] + a * sin[j + half];
    }
}

static inline __m256 load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* out (8 * chunks,) = sum over p <= pos of weights[p] * inv * v_p, the sum held in registers. */
static inline __attribute__((always_inline)) void weighted_sum(const uint16_t *values, const float *weights,
                                                              float inv, int pos, int chunks, float *out) {
    __m256 acc[32];
    for (int c = 0; c < chunks; c++) acc[c] = _mm256_setzero_ps();
    for (int p = 0; p <= pos; p++) {
        const uint16_t *vp = values + (size_t)p * 8 * chunks;
        __m256 wgt = _mm256_set1_ps(weights[p] * inv);
        for (int c = 0; c < chunks; c++) acc[c] = _mm256_fmadd_ps(wgt, load_f16(vp + 8 * c), acc[c]);
    }
    for (int c = 0; c < chunks; c++) _mm256_storeu_ps(out + 8 * c, acc[c]);
}

/* out (D,) = softmax over p <= pos of q . k_p / sqrt(D), times v_p; keys, values (max_len, D)
 * fp16, D % 8 == 0 and D <= 256. Four positions' scores at a time (four accumulation chains
 * side by side), each the same FMAs in the same order as one alone. */
static void attend(const float *q, const uint16_t *keys, const uint16_t *values, int pos, int dim,
                   float *scores, float *out) {
    float scale = 1.0f / sqrtf((float)dim), top = -INFINITY, total = 0.0f;
    int p = 0;
    for (; p + 3 <= pos; p += 4) {
        const uint16_t *k0 = keys + (size_t)p * dim;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < dim; j += 8) {
            __m256 qv = _mm256_loadu_ps(q + j);
            a0 = _mm256_fmadd_ps(qv, load_f16(k0 + j), a0);
            a1 = _mm256_fmadd_ps(qv, load_f16(k0 + dim + j), a1);
            a2 = _mm256_fmadd_ps(qv, load_f16(k0 + 2 * dim + j), a2);
            a3 = _mm256_fmadd_ps(qv, load_f16(k0 + 3 * dim + j), a3);
        }
        scores[p] = hsum8(a0) * scale, scores[p + 1] = hsum8(a1) * scale;
        scores[p + 2] = hsum8(a2) * scale, scores[p + 3] = hsum8(a3) * scale;
    }
    for (; p <= pos; p++) {
        const uint16_t *kp = keys + (size_t)p * dim;
        __m256 a = _mm256_setzero_ps();
        for (int j = 0; j < dim; j += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), load_f16(kp + j), a);
        scores[p] = hsum8(a) * scale;
    }
    for (p = 0; p <= pos; p++)
        if (scores[p] > top) top = scores[p];
    for (p = 0; p <= pos; p += 8)  /* whole chunks: scores has room for 8 past max_len */
        _mm256_storeu_ps(scores + p, exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + p), _mm256_set1_ps(top))));
    for (p = 0; p <= pos; p++) total += scores[p];
    float inv = 1.0f / total;
    switch (dim / 8) {  /* a constant register count for the usual head sizes */
        case 4: weighted_sum(values, scores, inv, pos, 4, out); break;
        case 8: weighted_sum(values, scores, inv, pos, 8, out); break;
        case 16: weighted_sum(values, scores, inv, pos, 16, out); break;
        default: weighted_sum(values, scores, inv, pos, dim / 8, out);
    }
}

/* Attention of every (row, position, head) of a forward; a part takes a range of them and its
 * own row of `scores`. */
typedef struct {
    const Stack *s;
    int layer, rows, steps, start;
    float *qkv, *att, *scores;
} Attention;

static void attention_part(void *arg, int part, int parts) {
    const Attention *a = arg;
    const Stack *s = a->s;
    const int d = s->hidden, H = s->heads, D = s->head_dim;
    long long total = (long long)a->rows * a->steps * H;
    float *scores = a->scores + (size_t)part * (s->max_len + 8);
    for (long long j = total * part / parts; j < total * (part + 1) / parts; j++) {
        int h = (int)(j % H), t = (int)(j / H % a->steps), r = (int)(j / H / a->steps);
        size_t base = ((((size_t)a->layer * s->max_batch + r) * H + h) * s->max_len) * D, i = (size_t)r * a->steps + t;
        attend(a->qkv + i * 3 * d + h * D, s->keys + base, s->values + base, a->start + t, D, scores,
               a->att + i * d + h * D);
    }
}

/* The scratch stack_forward needs for n = rows * steps positions on `threads` threads, in floats. */
size_t scratch_floats(const Stack *s, int n, int threads) {
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    return (size_t)n * (5 * (size_t)s->hidden + 3 * (size_t)s->mlp) + (size_t)threads * (s->max_len + 8);
}

/* `steps` positions start..start+steps-1 of `rows` rows: x (rows, steps, hidden) the inputs,
 * overwritten with the residual stream; out (rows, hidden) the final normed state of each row's
 * last position. Prefill and decode are this one function: a position's result is the same
 * whether it comes in a prefill or alone. The keys and values of the positions are written
 * into the cache. Returns 0, or -1 where the sizes do not fit the cache. */
int stack_forward(const Stack *s, float *x, int rows, int steps, int start, float *out, float *scratch, int threads) {
    const int d = s->hidden, m = s->mlp, H = s->heads, D = s->head_dim;
    const size_t n = (size_t)rows * steps;
    if (rows < 1 || rows > s->max_batch || steps < 1 || start < 0 || start + steps > s->max_len || d % WIDTH ||
        m % WIDTH || D % 8 || D > 256)
        return -1;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    float *xn = scratch, *qkv = xn + n * d, *att = qkv + n * 3 * d, *gu = att + n * d, *act = gu + n * 2 * m;
    float *scores = act + n * m;
    for (int l = 0; l < s->layers; l++) {
        for (size_t i = 0; i < n; i++) rmsnorm(x + i * d, s->norm1[l], d, s->eps, xn + i * d);
        gemv_f16(s->qkv[l], 3 * d, d, xn, (int)n, qkv, threads);
        for (int r = 0; r < rows; r++) {  /* RoPE, then the cache: every position's keys before any attends */
            for (int t = 0; t < steps; t++) {
                int pos = start + t;
                const float *cos = s->cos + (size_t)pos * D, *sin = s->sin + (size_t)pos * D;
                for (int h = 0; h < H; h++) {
                    float *q = qkv + ((size_t)r * steps + t) * 3 * d + h * D, *k = q + d, *v = q + 2 * d;
                    rope(q, cos, sin, D);
                    rope(k, cos, sin, D);
                    size_t at = (((((size_t)l * s->max_batch + r) * H + h) * s->max_len) + pos) * D;
                    for (int j = 0; j < D; j += 8) {
                        _mm_storeu_si128((__m128i *)(s->keys + at + j), _mm256_cvtps_ph(_mm256_loadu_ps(k + j), 0));
                        _mm_storeu_si128((__m128i *)(s->values + at + j), _mm256_cvtps_ph(_mm256_loadu_ps(v + j), 0));
                    }
                }
            }
        }
        Attention job = {s, l, rows, steps, start, qkv, att, scores};
        long long pairs = (long long)rows * steps * H;
        parallel(attention_part, &job, pairs >= threads ? threads : (int)pairs);
        gemv_f16(s->o[l], d, d, att, (int)n, xn, threads);  /* xn: the attention's output projection */
        for (size_t i = 0; i < n * d; i++) x[i] += xn[i];
        for (size_t i = 0; i < n; i++) rmsnorm(x + i * d, s->norm2[l], d, s->eps, xn + i * d);
        gemv_f16(s->gate_up[l], 2 * m, d, xn, (int)n, gu, threads);
        for (size_t i = 0; i < n; i++) {  /* SwiGLU: silu(g) * u = g / (1 + e^-g) * u */
            const float *g = gu + i * 2 * m, *u = g + m;
            for (int j = 0; j < m; j += 8) {
                __m256 gv = _mm256_loadu_ps(g + j);
                __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
                __m256 silu = _mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
                _mm256_storeu_ps(act + i * m + j, _mm256_mul_ps(silu, _mm256_loadu_ps(u + j)));
            }
        }
        gemv_f16(s->down[l], d, m, act, (int)n, xn, threads);
        for (size_t i = 0; i < n * d; i++) x[i] += xn[i];
    }
    for (int r = 0; r < rows; r++)
        rmsnorm(x + ((size_t)r * steps + steps - 1) * d, s->norm, d, s->eps, out + (size_t)r * d);
    return 0;
}
