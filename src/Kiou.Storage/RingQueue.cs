namespace Kiou.Storage;

/// <summary>A growable FIFO with indexed access from the front (the in-flight appends, in offset order).</summary>
internal sealed class RingQueue<T>
    where T : class
{
    private T?[] _items = new T?[16];
    private int _head;

    public int Count { get; private set; }

    public T this[int index]
    {
        get
        {
            if ((uint)index >= (uint)Count)
            {
                throw new ArgumentOutOfRangeException(nameof(index));
            }

            return _items[(_head + index) & (_items.Length - 1)]!;
        }
    }

    public T Front => this[0];

    public T Back => this[Count - 1];

    public void Enqueue(T item)
    {
        if (Count == _items.Length)
        {
            var bigger = new T?[_items.Length * 2];
            for (int i = 0; i < Count; i++)
            {
                bigger[i] = _items[(_head + i) & (_items.Length - 1)];
            }

            _items = bigger;
            _head = 0;
        }

        _items[(_head + Count) & (_items.Length - 1)] = item;
        Count++;
    }

    public T Dequeue()
    {
        T item = Front;
        _items[_head] = null;
        _head = (_head + 1) & (_items.Length - 1);
        Count--;
        return item;
    }
}
