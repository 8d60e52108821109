// The ring-fd test counts anon_inode:[io_uring] fds of the whole process, so no other test may open a ring
// at the same time. The suite takes a few seconds; running it serially costs little.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
