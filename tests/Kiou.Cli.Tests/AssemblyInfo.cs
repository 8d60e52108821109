// The tools share one build in artifacts/cli and BuildTests replaces it: the classes run one after another.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
