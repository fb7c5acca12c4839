//! Fractional positions: where a dropped task lands, when a column is
//! rebalanced, and that repeated drops never repeat a position.

use super::*;

use crate::domain::event::Repositioned;
use crate::domain::position::{MIN_GAP, STEP};

/// A quick board whose "todo" column holds tasks 1, 2, 3 at STEP, 2*STEP, 3*STEP.
fn three_in_todo() -> Harness {
    let mut h = Harness::quick();
    for n in 1..=3 {
        h.ok(ANON, create_task(task_id(n)));
    }
    assert_eq!(
        h.column("todo"),
        vec![
            (task_id(1), STEP),
            (task_id(2), 2.0 * STEP),
            (task_id(3), 3.0 * STEP)
        ]
    );
    h
}

#[test]
fn dropping_a_task_between_two_others_takes_the_wanted_position_without_rebalancing() {
    let mut h = three_in_todo();

    let event = h.ok(ANON, create_task_at(task_id(9), "todo", 1536.0));

    let created = task_created(&event);
    assert_eq!(created.position, 1536.0);
    assert!(created.rebalanced.is_empty());
    assert_eq!(
        h.column_ids("todo"),
        vec![task_id(1), task_id(9), task_id(2), task_id(3)]
    );
}

#[test]
fn dropping_just_after_a_neighbour_rebalances_and_lists_only_tasks_that_moved() {
    let mut h = three_in_todo();

    let event = h.ok(
        ANON,
        create_task_at(task_id(9), "todo", 2.0 * STEP + MIN_GAP / 2.0),
    );

    // Order 1, 2, 9, 3: tasks 1 and 2 already sit on their new slots.
    let created = task_created(&event);
    assert_eq!(created.position, 3.0 * STEP);
    assert_eq!(
        created.rebalanced,
        vec![Repositioned {
            task_id: task_id(3),
            position: 4.0 * STEP
        }]
    );
    assert_eq!(
        h.column("todo"),
        vec![
            (task_id(1), STEP),
            (task_id(2), 2.0 * STEP),
            (task_id(9), 3.0 * STEP),
            (task_id(3), 4.0 * STEP),
        ]
    );
}

#[test]
fn dropping_on_exactly_a_neighbours_position_goes_before_that_neighbour() {
    let mut h = three_in_todo();

    let event = h.ok(ANON, create_task_at(task_id(9), "todo", 2.0 * STEP));

    let created = task_created(&event);
    assert_eq!(created.position, 2.0 * STEP);
    assert_eq!(
        created.rebalanced,
        vec![
            Repositioned {
                task_id: task_id(2),
                position: 3.0 * STEP
            },
            Repositioned {
                task_id: task_id(3),
                position: 4.0 * STEP
            },
        ]
    );
    assert_eq!(
        h.column_ids("todo"),
        vec![task_id(1), task_id(9), task_id(2), task_id(3)]
    );
    assert_strictly_increasing(&h.column("todo"));
}

#[test]
fn dropping_just_before_a_neighbour_also_goes_before_it() {
    let mut h = three_in_todo();

    let event = h.ok(
        ANON,
        create_task_at(task_id(9), "todo", STEP - MIN_GAP / 4.0),
    );

    let created = task_created(&event);
    assert_eq!(created.position, STEP);
    assert_eq!(created.rebalanced.len(), 3, "{:?}", created.rebalanced);
    assert_eq!(
        h.column("todo"),
        vec![
            (task_id(9), STEP),
            (task_id(1), 2.0 * STEP),
            (task_id(2), 3.0 * STEP),
            (task_id(3), 4.0 * STEP),
        ]
    );
}

#[test]
fn a_rebalance_touches_only_the_target_column() {
    let mut h = three_in_todo();
    h.ok(ANON, create_task_at(task_id(7), "finished", 2.0 * STEP));

    let event = h.ok(ANON, create_task_at(task_id(9), "todo", 2.0 * STEP));

    let rebalanced: Vec<Uuid> = task_created(&event)
        .rebalanced
        .iter()
        .map(|r| r.task_id)
        .collect();
    assert!(!rebalanced.contains(&task_id(7)));
    assert_eq!(h.task(task_id(7)).position, 2.0 * STEP);
}

#[test]
fn moving_a_task_onto_a_neighbour_rebalances_around_it_without_counting_itself() {
    let mut h = three_in_todo();

    let event = h.ok(ANON, move_task(task_id(3), None, Some(STEP)));

    let moved = task_moved(&event);
    assert_eq!(moved.from.position, 3.0 * STEP);
    assert_eq!(moved.to.position, STEP);
    assert_eq!(
        moved.rebalanced,
        vec![
            Repositioned {
                task_id: task_id(1),
                position: 2.0 * STEP
            },
            Repositioned {
                task_id: task_id(2),
                position: 3.0 * STEP
            },
        ]
    );
    assert_eq!(
        h.column("todo"),
        vec![
            (task_id(3), STEP),
            (task_id(1), 2.0 * STEP),
            (task_id(2), 3.0 * STEP),
        ]
    );
}

#[test]
fn moving_a_task_onto_its_own_position_does_not_rebalance() {
    let mut h = three_in_todo();

    let event = h.ok(ANON, move_task(task_id(2), Some("todo"), Some(2.0 * STEP)));

    assert!(task_moved(&event).rebalanced.is_empty());
    assert_eq!(h.task(task_id(2)).position, 2.0 * STEP);
}

#[test]
fn a_crowded_drop_into_another_column_rebalances_that_column() {
    let mut h = three_in_todo();
    h.ok(ANON, create_task_at(task_id(7), "finished", 100.0));
    h.ok(ANON, create_task_at(task_id(8), "finished", 200.0));

    let event = h.ok(ANON, move_task(task_id(1), Some("finished"), Some(200.0)));

    let moved = task_moved(&event);
    assert_eq!(moved.to.position, 2.0 * STEP);
    assert_eq!(
        moved.rebalanced,
        vec![
            Repositioned {
                task_id: task_id(7),
                position: STEP
            },
            Repositioned {
                task_id: task_id(8),
                position: 3.0 * STEP
            },
        ]
    );
    assert_eq!(
        h.column_ids("finished"),
        vec![task_id(7), task_id(1), task_id(8)]
    );
    assert_strictly_increasing(&h.column("finished"));
    assert_eq!(h.column_ids("todo"), vec![task_id(2), task_id(3)]);
}

#[test]
fn dropping_new_cards_between_the_first_two_100_times_never_repeats_a_position() {
    let mut h = three_in_todo();
    let mut rebalances = 0;

    for n in 0..100 {
        let column = h.column("todo");
        let between = (column[0].1 + column[1].1) / 2.0;
        let id = task_id(100 + n);

        let event = h.ok(ANON, create_task_at(id, "todo", between));

        if !task_created(&event).rebalanced.is_empty() {
            rebalances += 1;
        }
        let column = h.column("todo");
        assert_eq!(column[1].0, id, "drop {n} lands second");
        assert_strictly_increasing(&column);
    }
    assert_eq!(h.column("todo").len(), 103);
    assert!(rebalances > 0, "halving the gap 100 times must rebalance");
}

#[test]
fn moving_the_last_card_between_the_first_two_100_times_never_repeats_a_position() {
    let mut h = three_in_todo();
    h.ok(ANON, create_task(task_id(4)));
    h.ok(ANON, create_task(task_id(5)));
    let mut rebalances = 0;

    for n in 0..100 {
        let column = h.column("todo");
        let between = (column[0].1 + column[1].1) / 2.0;
        let last = column.last().unwrap().0;

        let event = h.ok(ANON, move_task(last, None, Some(between)));

        if !task_moved(&event).rebalanced.is_empty() {
            rebalances += 1;
        }
        let column = h.column("todo");
        assert_eq!(column[1].0, last, "move {n} lands second");
        assert_strictly_increasing(&column);
    }
    assert_eq!(h.column("todo").len(), 5);
    assert!(rebalances > 0, "halving the gap 100 times must rebalance");
}
