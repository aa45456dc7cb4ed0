//! The forward pass of one image and of a batch: infer-core's f32 and int8 kernels, scalar
//! and SIMD, on the real test images with a trained ReLU model. Throughput in images/s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use infer_core::{F32Model, Int8Model, Int8Scratch, Scratch};
use std::hint::black_box;
use trainer::quant;

fn bench(c: &mut Criterion) {
    let ds = benches::dataset();
    let model = benches::relu_model(&ds);
    let f32_file = trainer::format::encode_f32(&model).expect("encodes");
    let int8 = quant::export_int8(&model, &ds).expect("quantizes");
    let input = ds.test.width;
    let f32_net = F32Model::from_bytes(&f32_file).expect("valid f32 model");
    let int8_file = benches::AlignedModel::new(&int8.bytes);
    let int8_net = Int8Model::from_bytes(int8_file.bytes()).expect("valid int8 model");
    let batch = 1000;
    let pixels: Vec<&[u8]> = ds.test.pixels.chunks_exact(input).take(batch).collect();
    let images: Vec<&[f32]> = ds.test.values.chunks_exact(input).take(batch).collect();
    let (mut s32, mut s8) = (Scratch::new(), Int8Scratch::new());
    let (mut logits, mut scores) = ([0f32; 10], [0i32; 10]);

    // One image, cycling through the test images so that sparsity is the test set's.
    let mut g = c.benchmark_group("forward/one-image");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    let mut next = || {
        i = (i + 1) % batch;
        i
    };
    g.bench_function("f32-scalar", |b| b.iter(|| f32_net.predict(black_box(images[next()]), &mut s32, &mut logits)));
    g.bench_function("int8-scalar", |b| {
        b.iter(|| int8_net.predict_scalar(black_box(pixels[next()]), &mut s8, &mut scores))
    });
    g.bench_function("int8-simd", |b| b.iter(|| int8_net.predict(black_box(pixels[next()]), &mut s8, &mut scores)));
    g.finish();

    let mut g = c.benchmark_group(format!("forward/batch-{batch}"));
    g.throughput(Throughput::Elements(batch as u64));
    g.sample_size(10);
    g.bench_function("int8-simd", |b| {
        b.iter(|| {
            pixels.iter().map(|p| int8_net.predict(black_box(p), &mut s8, &mut scores).unwrap_or(0)).sum::<usize>()
        })
    });
    g.finish();

    // Batches through infer-host: the blocked pass over rayon's pool, 1 and 2 threads.
    let all = &ds.test.pixels;
    let kernel = infer_host::kernel().expect("FMLP_INT8_KERNEL names a kernel this CPU runs");
    let pools = [(1, benches::one_thread_pool()), (2, rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap())];
    for images in [1usize, 16, 256, 10_000] {
        let mut g = c.benchmark_group(format!("forward/int8-batch-{images}"));
        g.throughput(Throughput::Elements(images as u64));
        if images >= 256 {
            g.sample_size(20);
        }
        let flat = &all[..images * input];
        let (mut scores, mut classes) = (vec![0i32; images * 10], vec![0u16; images]);
        for (threads, pool) in &pools {
            g.bench_function(format!("{}-{threads}-thread", infer_host::short_name(kernel)), |b| {
                pool.install(|| {
                    b.iter(|| infer_host::classify(&int8_net, kernel, black_box(flat), &mut scores, &mut classes))
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group(format!("forward/batch-{batch}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(batch as u64));
    let mut ws = trainer::model::Workspace::default();
    let x = &ds.test.values[..batch * input];
    g.bench_function("f32-trainer-gemm", |b| b.iter(|| model.forward(black_box(x), batch, &mut ws, None)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
