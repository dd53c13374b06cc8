# Shared loaders of the change-detection datasets: batch 16 of random crops in training (8 workers), whole images
# one at a time in evaluation; each dataset file adds its `dataset` entries.
train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
)
val_dataloader = dict(train_dataloader, batch_size=1, num_workers=2, sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = dict(val_dataloader)
